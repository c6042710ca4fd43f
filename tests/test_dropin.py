"""MinGRU / MinLSTM as drop-ins for nn.GRU / nn.LSTM: code written for torch's layers runs unchanged.

The programs below follow pytorch/examples' word_language_model (RNNModel with init_hidden,
repackage_hidden, truncated BPTT, a generate loop, saving the whole model, ONNX export) and a
pack_padded_sequence classifier. Each runs the same code with torch's class and with ours, and the
shapes and types of everything returned must be the same.
"""

import io

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from minrnn import LMConfig, MinGRU, MinLSTM, MinRNNLM, functional
from tests.test_layers import reference_layer

PAIRS = {"GRU": (nn.GRU, MinGRU), "LSTM": (nn.LSTM, MinLSTM)}
Tensor = torch.Tensor


def structure(obj):
    """What a caller can see of a returned object: types, shapes, dtypes, nesting (no values)."""
    if isinstance(obj, PackedSequence):
        return ("PackedSequence", structure(obj.data), obj.batch_sizes.tolist(),
                None if obj.sorted_indices is None else obj.sorted_indices.tolist())
    if isinstance(obj, Tensor):
        return ("Tensor", tuple(obj.shape), obj.dtype, obj.device.type, obj.requires_grad)
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, tuple(structure(o) for o in obj))
    return type(obj).__name__



# ----------------------------------------------------------------------------- word language model


class RNNModel(nn.Module):
    """word_language_model's model.py, with the recurrent class passed in instead of looked up in nn."""

    def __init__(self, rnn_cls, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.2):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = rnn_cls(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return nn.functional.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


def repackage_hidden(h):
    """Detach the state from its history (main.py's helper, unchanged)."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def corpus(ntoken, n, seed):
    """A learnable token stream: a fixed random 'next word' table followed 80% of the time."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randint(ntoken, (ntoken,), generator=g)
    ids = [0]
    for _ in range(n - 1):
        follow = torch.rand((), generator=g) < 0.8
        ids.append(int(table[ids[-1]]) if follow else int(torch.randint(ntoken, (), generator=g)))
    return torch.tensor(ids)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()  # (T, B): time first, as nn.GRU


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def run_word_language_model(rnn_cls, rnn_type, seed):
    """main.py's train / evaluate / generate, in miniature. Returns what the program saw."""
    torch.manual_seed(seed)
    ntoken, bsz, bptt = 12, 8, 12
    model = RNNModel(rnn_cls, rnn_type, ntoken, 16, 32, 2)
    train_data = batchify(corpus(ntoken, 8 * 12 * 16 + 1, seed), bsz)
    criterion = nn.NLLLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seen, losses = {}, []
    for epoch in range(2):
        model.train()
        hidden = model.init_hidden(bsz)
        for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
            data, targets = get_batch(train_data, i, bptt)
            optimizer.zero_grad()
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
            losses.append(loss.item())
            if epoch == 0 and batch == 0:
                seen["train output"], seen["train hidden"] = structure(output), structure(hidden)
    model.eval()
    with torch.no_grad():  # evaluate(): a state carried over chunks, the last one shorter than bptt
        hidden = model.init_hidden(bsz)
        for i in range(0, train_data.size(0) - 1, bptt - 1):
            data, targets = get_batch(train_data, i, bptt - 1)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
        seen["eval output"], seen["eval hidden"] = structure(output), structure(hidden)

    # Save the whole model and load it back as main.py does: torch.load with weights_only=True and
    # the same safe_globals list (torch's classes), then flatten_parameters().
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    with torch.serialization.safe_globals([RNNModel, nn.Dropout, nn.Linear, nn.GRU, nn.LSTM, nn.Embedding]):
        loaded = torch.load(buf, weights_only=True)
    loaded.rnn.flatten_parameters()
    x = train_data[:bptt, :2]
    with torch.no_grad():
        for a, b in zip(torch.utils._pytree.tree_leaves(model(x, model.init_hidden(2))),
                        torch.utils._pytree.tree_leaves(loaded(x, loaded.init_hidden(2)))):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    # generate.py: one token at a time, the state passed back in.
    hidden, input, words = loaded.init_hidden(1), torch.randint(ntoken, (1, 1)), []
    with torch.no_grad():
        for _ in range(20):
            output, hidden = loaded(input, hidden)
            word_idx = torch.multinomial(output.squeeze().exp(), 1)[0]
            input.fill_(word_idx)
            words.append(int(word_idx))
    seen["generate output"], seen["generate hidden"] = structure(output), structure(hidden)
    return model, seen, losses, words


@pytest.mark.parametrize("rnn_type", PAIRS)
def test_word_language_model_runs_unchanged(rnn_type):
    results = {}
    for cls in PAIRS[rnn_type]:
        model, seen, losses, words = run_word_language_model(cls, rnn_type, seed=0)
        results[cls] = seen
        first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
        assert last < 0.8 * first, f"{cls.__name__}: training loss {first:.3f} -> {last:.3f} did not decrease"
        assert len(words) == 20 and all(0 <= w < 12 for w in words)
    torch_seen, ours_seen = results.values()
    assert ours_seen == torch_seen


# ----------------------------------------------------------------------------- the nn.GRU interface


@pytest.mark.parametrize("rnn_type", PAIRS)
def test_hx_keyword_and_flatten_parameters(rnn_type):
    ours = PAIRS[rnn_type][1](3, 5, num_layers=2)
    x, h0 = torch.randn(7, 2, 3), torch.randn(2, 2, 5)
    hx = (h0, h0) if rnn_type == "LSTM" else h0
    assert ours.flatten_parameters() is None
    out_kw, state_kw = ours(x, hx=hx)
    out_pos, state_pos = ours(x, hx)
    torch.testing.assert_close(out_kw, out_pos, rtol=0, atol=0)
    for a, b in zip(torch.utils._pytree.tree_leaves(state_kw), torch.utils._pytree.tree_leaves(state_pos)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(out_kw, ours(x)[0])  # hx was used


def test_unsupported_nn_options_say_what_to_do():
    with pytest.raises(ValueError, match=r"no proj_size .* nn\.Linear\(hidden_size, 4\)"):
        MinLSTM(3, 8, proj_size=4)
    with pytest.raises(ValueError, match="no proj_size"):
        MinGRU(3, 8, proj_size=4)
    assert MinLSTM(3, 8, proj_size=0).proj_size == 0  # nn.LSTM's default is accepted, and read back
    with pytest.raises(AttributeError, match=r"no weight_hh_l0: .*proj\[l \* num_directions \+ d\]"):
        MinGRU(3, 8).weight_hh_l0
    with pytest.raises(AttributeError, match="no bias_ih_l1_reverse"):
        MinLSTM(3, 8, 2, bidirectional=True).bias_ih_l1_reverse
    with pytest.raises(AttributeError, match="has no attribute 'nonexistent'"):  # others: torch's message
        MinGRU(3, 8).nonexistent
    packed = pack_padded_sequence(torch.randn(4, 2, 3), [4, 2])
    with pytest.raises(ValueError, match="PackedSequence already holds its lengths"):
        MinGRU(3, 8)(packed, lengths=[4, 2])
    with pytest.raises(ValueError, match="h_0 and c_0 must be equal"):
        h = torch.randn(1, 2, 8)
        MinLSTM(3, 8)(torch.randn(4, 2, 3), (h, h + 1))


# ----------------------------------------------------------------------------- packed sequences


class Classifier(nn.Module):
    """A variable-length classifier in the usual pack_padded_sequence style."""

    def __init__(self, rnn_cls, vocab=20, emb=8, hidden=16, classes=3, batch_first=True):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(vocab, emb, padding_idx=0)
        self.rnn = rnn_cls(emb, hidden, num_layers=2, batch_first=batch_first, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=self.batch_first, enforce_sorted=False)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state
        padded, out_lengths = pad_packed_sequence(out, batch_first=self.batch_first)
        return self.head(torch.cat([h_n[-2], h_n[-1]], dim=-1)), out, state, padded, out_lengths


@pytest.mark.parametrize("rnn_type", PAIRS)
@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_classifier_side_by_side(rnn_type, batch_first):
    lengths = torch.tensor([5, 9, 2, 9, 1])  # unsorted, with a tie: enforce_sorted=False reorders
    ids = torch.randint(1, 20, (5, 9))
    ids[torch.arange(9) >= lengths.unsqueeze(1)] = 0
    ids = ids if batch_first else ids.t()
    labels = torch.randint(3, (5,))
    seen = []
    for cls in PAIRS[rnn_type]:
        torch.manual_seed(1)
        model = Classifier(cls, batch_first=batch_first)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(15):
            logits, out, state, padded, out_lengths = model(ids, lengths)
            loss = nn.functional.cross_entropy(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.5 * losses[0], f"{cls.__name__}: {losses[0]:.3f} -> {losses[-1]:.3f}"
        assert torch.equal(out_lengths, lengths)
        seen.append([structure(o) for o in (logits, out, state, padded, out_lengths)])
        # outputs past each length are zero, as pad_packed_sequence makes them for nn.GRU
        time = torch.arange(padded.shape[1 if batch_first else 0])
        pad = time >= lengths.unsqueeze(1)
        assert torch.all((padded if batch_first else padded.transpose(0, 1))[pad] == 0)
    assert seen[0] == seen[1]


@pytest.mark.parametrize("cell", [MinGRU, MinLSTM])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_input_matches_float64_reference(cell, enforce_sorted):
    B, T, I, H = 4, 8, 3, 5
    lengths = torch.tensor([8, 6, 3, 1]) if enforce_sorted else torch.tensor([3, 8, 1, 6])
    rnn = cell(I, H, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I)
    h0 = torch.randn(4, B, H)  # different per sequence: a batch-order mix-up shows
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    out, state = rnn(packed, (h0, h0) if cell is MinLSTM else h0)
    h_n = state[0] if cell is MinLSTM else state
    assert isinstance(out, PackedSequence)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert (out.sorted_indices is None) == enforce_sorted
    padded, out_lengths = pad_packed_sequence(out)
    ref_out, ref_h = reference_layer(rnn, x.transpose(0, 1), h0, lengths)
    torch.testing.assert_close(padded.transpose(0, 1).double(), ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_n.double(), ref_h, rtol=1e-5, atol=1e-5)
    # gradients reach the weights and are finite
    padded.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rnn.parameters())


def test_cpu_lengths_with_input_on_another_device():
    """pack_padded_sequence wants CPU lengths while the input may be on the GPU. Without a GPU here,
    the meta device stands in: CPU lengths must not raise a device error, and the mask they make is
    built on the input's device (the meta tensors carry no values, so only devices and shapes are
    checked; the values are covered by the CPU tests above)."""
    rnn = MinGRU(3, 4, num_layers=2, bidirectional=True).to("meta")
    out, h_n = rnn(torch.empty(6, 2, 3, device="meta"), lengths=torch.tensor([6, 3]))
    assert out.device.type == "meta" and out.shape == (6, 2, 8) and h_n.shape == (4, 2, 4)
    mask = rnn._lengths_mask(torch.tensor([6, 3]), 2, 6, torch.device("meta"))
    assert mask.device.type == "meta" and mask.shape == (2, 6)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=6\]"):  # checked on the CPU
        rnn(torch.empty(6, 2, 3, device="meta"), lengths=torch.tensor([7, 3]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("rnn_type", PAIRS)
def test_cpu_lengths_with_cuda_input(rnn_type):
    torch_cls, ours_cls = PAIRS[rnn_type]
    ours = ours_cls(3, 5, batch_first=True).cuda()
    x = torch.randn(3, 7, 3, device="cuda")
    lengths = torch.tensor([7, 2, 5])  # on the CPU, as pack_padded_sequence wants it
    out, _ = ours(x, lengths=lengths)
    packed_out, _ = ours(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    padded, _ = pad_packed_sequence(packed_out, batch_first=True)
    torch.testing.assert_close(padded, out)
    ref_out, _ = reference_layer(ours, x.cpu(), None, lengths)
    torch.testing.assert_close(out.cpu().double(), ref_out, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- saving whole models


@pytest.mark.parametrize(
    "make",
    [
        lambda: MinGRU(3, 5, num_layers=2, bidirectional=True, dropout=0.1),
        lambda: MinLSTM(3, 5, batch_first=True),
        lambda: MinRNNLM(LMConfig(vocab_size=11, d_model=8, n_layers=2, cell="minlstm")),
        lambda: MinRNNLM(LMConfig(vocab_size=11, d_model=8, n_layers=1, norm="rmsnorm", expansion=1.0,
                                  conv_kernel=0, mlp_ratio=0, tie_weights=True)),
    ],
    ids=["MinGRU", "MinLSTM", "MinRNNLM", "MinRNNLM-bare"],
)
def test_torch_load_weights_only(tmp_path, make):
    model = make().eval()
    # A user's own safe_globals block, as in pytorch/examples, removes what it lists on exit; the
    # registration made at `import minrnn` must survive it.
    with torch.serialization.safe_globals([nn.Linear, nn.ModuleList, nn.Embedding]):
        pass
    torch.save(model, tmp_path / "model.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "model.pt") == []
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert type(loaded) is type(model)
    x = torch.randint(11, (2, 5)) if isinstance(model, MinRNNLM) else torch.randn(5, 2, 3)
    with torch.no_grad():
        for a, b in zip(torch.utils._pytree.tree_leaves(model(x)), torch.utils._pytree.tree_leaves(loaded(x))):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- export


def train_briefly(model, make_batch, steps=4):
    """A few optimizer steps on the default (fused, if available) backend, as a user's training would."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = make_batch(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def flat(obj):
    return torch.utils._pytree.tree_leaves(obj)


def exported_cases():
    """(name, trained model, example args, dynamic_shapes, args for another T) for each model."""
    ntoken = 12

    def wlm(rnn_type):
        model = RNNModel(PAIRS[rnn_type][1], rnn_type, ntoken, 16, 24, 2)
        data = batchify(corpus(ntoken, 8 * 40 + 1, 3), 8)

        def batch(m):
            x, y = get_batch(data, 0, 10)
            return nn.functional.nll_loss(m(x, m.init_hidden(8))[0], y)

        train_briefly(model, batch)
        hidden = model.init_hidden(2)
        state_dims = ({}, {}) if rnn_type == "LSTM" else {}  # ({}, {}): torch's exporter misreads (None, None)

        def make_args(T):  # another length, and a state carried over from an earlier chunk
            state = repackage_hidden(model(torch.randint(ntoken, (3, 2)), hidden)[1])
            return torch.randint(ntoken, (T, 2)), state

        return model, (torch.randint(ntoken, (7, 2)), hidden), ({0: torch.export.Dim("T")}, state_dims), make_args

    def lm():
        model = MinRNNLM(LMConfig(vocab_size=ntoken, d_model=16, n_layers=2, dropout=0.1))

        def batch(m):
            idx = torch.randint(ntoken, (4, 9))
            logits, _ = m(idx[:, :-1])
            return nn.functional.cross_entropy(logits.reshape(-1, ntoken), idx[:, 1:].reshape(-1))

        train_briefly(model, batch)
        dynamic_shapes = ({1: torch.export.Dim("T")},)
        return model, (torch.randint(ntoken, (2, 7)),), dynamic_shapes, lambda T: (torch.randint(ntoken, (2, T)),)

    return {"RNNModel-MinGRU": lambda: wlm("GRU"), "RNNModel-MinLSTM": lambda: wlm("LSTM"), "MinRNNLM": lm}


def assert_export_left_backends_alone(model):
    """Exporting picks its own scan per call: the process default and the layers' settings are unchanged."""
    assert functional._default_backend.get() is None
    assert all(getattr(m, "backend", None) is None for m in model.modules())
    probe = torch.randn(1, 2, 3)
    auto = [name for name in functional.available_backends(probe) if functional._BACKENDS[name].auto][0]
    assert functional.get_backend(probe).name == auto  # the fused CPU kernels where numba works


def _export_supported() -> bool:
    try:
        from torch._higher_order_ops.scan import scan  # noqa: F401  (what minrnn.ops.scan_export uses)
    except ImportError:
        return False
    return hasattr(torch.compiler, "is_exporting")


needs_export = pytest.mark.skipif(not _export_supported(), reason="this torch has no scan op / is_exporting to export with")


@needs_export
@pytest.mark.parametrize("T", [1, 2, 37])
@pytest.mark.parametrize("with_h0", [False, True])
def test_export_scan_matches_float64_reference(T, with_h0):
    """The scan used while exporting, run eagerly: values and gradients against the float64 reference."""
    from minrnn.ops.reference import sequential_scan
    from minrnn.ops.scan_export import linear_scan_export

    a = torch.rand(3, T, 5, requires_grad=True)
    b = torch.randn(3, T, 5, requires_grad=True)
    h0 = torch.randn(3, 5, requires_grad=True) if with_h0 else None
    inputs = [t for t in (a, b, h0) if t is not None]
    h = linear_scan_export(a, b, h0)
    ref = sequential_scan(a.double(), b.double(), None if h0 is None else h0.double())
    torch.testing.assert_close(h.double(), ref, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(h)
    got = torch.autograd.grad(h, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad.double())
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)  # w: float64 maths, rounded to the inputs' dtype
    assert linear_scan_export(a.bfloat16(), b.bfloat16()).dtype == torch.bfloat16  # accumulated in float32


@needs_export
@pytest.mark.parametrize(
    "case",
    [
        pytest.param("RNNModel-MinGRU", marks=pytest.mark.slow),
        pytest.param("RNNModel-MinLSTM", marks=pytest.mark.slow),
        "MinRNNLM",
    ],
)
def test_torch_export_dynamic_length(case):
    """torch.export (what the ONNX exporter runs first) keeps T dynamic; the program equals eager.
    Runs without onnx installed; the layer cases are slow-marked for time only (the ONNX test below
    exports them too)."""
    model, args, dynamic_shapes, make_args = exported_cases()[case]()
    program = torch.export.export(model, args, dynamic_shapes=dynamic_shapes)
    assert_export_left_backends_alone(model)
    for T in (1, 4, 23):
        inputs = make_args(T)
        with torch.no_grad():
            for got, want in zip(flat(program.module()(*inputs)), flat(model(*inputs))):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_export
def test_export_with_a_backend_set_on_the_layer():
    """A layer set to a backend that cannot export (here the step-by-step reference, whose loop would
    fix T) still exports with a dynamic T, and keeps its setting."""
    rnn = MinLSTM(3, 6, batch_first=True, backend="sequential").eval()
    with functional.use_backend("torch"):
        program = torch.export.export(rnn, (torch.randn(2, 5, 3),), dynamic_shapes=({1: torch.export.Dim("T")},))
    assert rnn.backend == "sequential" and functional._default_backend.get() is None
    for T in (1, 9):
        x = torch.randn(2, T, 3)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x)[0], rnn(x)[0], rtol=1e-5, atol=1e-6)


@needs_export
@pytest.mark.parametrize(
    "case", [pytest.param("RNNModel-MinGRU", marks=pytest.mark.slow), "RNNModel-MinLSTM", "MinRNNLM"]
)
def test_onnx_export_matches_eager_in_onnxruntime(tmp_path, case):
    """main.py's export_onnx, with the dynamo exporter and a dynamic sequence length, after training
    and without switching backends; onnxruntime's outputs equal eager ones at other lengths.
    (The MinGRU case is slow-marked for time only: MinRNNLM runs minGRU layers in the default run.)"""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model, args, dynamic_shapes, make_args = exported_cases()[case]()
    program = torch.onnx.export(model, args, dynamo=True, dynamic_shapes=dynamic_shapes, verbose=False)
    program.save(tmp_path / "model.onnx")
    assert_export_left_backends_alone(model)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for T in (1, 4, 23):
        inputs = make_args(T)
        outputs = session.run(None, {name: t.numpy() for name, t in zip(names, flat(inputs))})
        with torch.no_grad():
            want = flat(model(*inputs))
        assert len(outputs) == len(want)
        for got, w in zip(outputs, want):
            torch.testing.assert_close(torch.from_numpy(got), w, rtol=1e-4, atol=1e-5)
