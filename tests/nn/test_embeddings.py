"""Step C: masked per-sample gradient embeddings against two independent oracles (torch.func
per-sample Jacobians and a loop of single-sample autograd calls), in float64."""
import pytest
import torch
from torch import nn
from torch.utils.data import (BatchSampler, DataLoader, IterableDataset, RandomSampler,
                              TensorDataset)

from fishermask_ext.nn import (MLP, ParamMask, ResNet18Narrow, SmallCNN, fisher_diagonal,
                               masked_grad_embeddings)
from fishermask_ext.nn.hooks import WEIGHTINGS
from fishermask_ext.testing import func_embeddings, loop_embeddings, network_terms, tol

from testing import require_native

# torch's note that padding="same" with an even kernel pads a copy of the input (Conv1dNet)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")


class Conv1dNet(nn.Module):
    """Conv1d with stride, dilation, groups, 'same' padding and BatchNorm1d; the logits are
    scaled after the classifier, so its output gradient comes from a backward pass."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.conv2 = nn.Conv1d(4, 4, 2, dilation=3, groups=2, padding="same")  # odd: 1 + 2
        self.linear = nn.Linear(4 * 6, 3)

    def forward(self, x):  # x: [n, 2, 11]
        h = torch.relu(self.bn(self.conv1(x)))
        return self.linear(torch.relu(self.conv2(h)).flatten(1)) / 2


class SeqNet(nn.Module):
    """A Linear over [n, S, I] inputs (extra sequence dims), reused twice, then pooled."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(5, 5)
        self.head = nn.Linear(5, 4, bias=False)

    def forward(self, x):  # x: [n, 2, 3, 5]
        h = torch.tanh(self.proj(torch.tanh(self.proj(x))))
        return self.head(h.mean(dim=(1, 2))), h


def _mask_every_param(model, k, seed=0):
    """k random positions (fewer for small tensors) of every parameter of `model`."""
    g = torch.Generator().manual_seed(seed)
    return ParamMask(model, {n: torch.randperm(p.numel(), generator=g)[:k]
                             for n, p in model.named_parameters()})


def _warm_batchnorm(model, x):
    """Non-trivial running statistics, then eval mode."""
    with torch.no_grad():
        model.train()(x * 2 + 0.5)
    return model.eval()


def _resnet_mask(model):
    names = ["conv1.weight", "bn1.weight", "layer1.0.conv2.weight", "layer1.1.bn2.bias",
             "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.weight", "layer3.1.bn1.bias",
             "layer4.0.conv1.weight", "layer4.1.conv2.weight", "linear.weight"]
    params, g = dict(model.named_parameters()), torch.Generator().manual_seed(1)
    return ParamMask(model, {n: torch.randperm(params[n].numel(), generator=g)[:6] for n in names})


def _case(name):
    """(model, inputs, mask) in float64, BatchNorm statistics warmed up."""
    torch.manual_seed(0)
    model, x = {
        "mlp": lambda: (MLP(in_features=12, num_classes=5, hidden=(7, 6)), torch.randn(4, 3, 4)),
        "small_cnn": lambda: (SmallCNN(in_channels=2, num_classes=4, input_size=7, width=4,
                                       hidden=6), torch.randn(3, 2, 7, 7)),
        "conv1d": lambda: (Conv1dNet(), torch.randn(4, 2, 11)),
        "seq_linear": lambda: (SeqNet(), torch.randn(3, 2, 3, 5)),
        "resnet18_narrow": lambda: (ResNet18Narrow(), torch.randn(3, 3, 32, 32)),
    }[name]()
    model, x = model.double(), x.double()
    _warm_batchnorm(model, x)
    mask = _resnet_mask(model) if name == "resnet18_narrow" else _mask_every_param(model, 9)
    return model, x, mask


CASES = ["mlp", "small_cnn", "conv1d", "seq_linear", "resnet18_narrow"]


@pytest.mark.parametrize("name", CASES)
def test_embeddings_equal_per_sample_gradients(name):
    model, x, mask = _case(name)
    for weighting in WEIGHTINGS:
        emb = masked_grad_embeddings(model, x, mask, weighting=weighting, backend="torch")
        assert emb.dtype == torch.float64 and emb.shape[::2] == (len(x), len(mask))
        func = func_embeddings(model, x, mask, weighting)
        bound = tol(torch.float64, terms=network_terms(model, x), magnitude=func)
        torch.testing.assert_close(emb, func, **bound)
        if name != "resnet18_narrow" or weighting == "none":   # the slow oracle once there
            torch.testing.assert_close(emb, loop_embeddings(model, x, mask, weighting), **bound)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_backend_equals_torch_backend(name, dtype):
    require_native("cpu", "masked_conv2d_grad")
    require_native("cpu", "masked_linear_grad")
    model, x, mask = _case(name)
    model, x = model.to(dtype), x.to(dtype)
    native = masked_grad_embeddings(model, x, mask, backend="native")
    want = masked_grad_embeddings(model, x, mask, backend="torch")
    torch.testing.assert_close(native, want, **tol(dtype, magnitude=want,
                                                   terms=network_terms(model, x, product=True)))


def test_model_state_is_left_as_it_was():
    model, x, mask = _case("small_cnn")
    model.train()
    model.features[1].eval()                       # a submodule with its own mode
    model.linear.weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = masked_grad_embeddings(model, x, mask)
    assert model.training and not model.features[1].training
    assert [p.requires_grad for p in model.parameters()].count(False) == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    model.linear.weight.requires_grad_(True)
    assert torch.equal(frozen, masked_grad_embeddings(model, x, mask))


class _Stream(IterableDataset):
    """Inputs of unknown length."""

    def __init__(self, x):
        self.x = x

    def __iter__(self):
        return iter(self.x)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_callers_no_grad_or_inference_mode_changes_nothing(context):
    model, x, mask = _case("small_cnn")
    expected, fisher = masked_grad_embeddings(model, x, mask), fisher_diagonal(model, x)
    with context():
        x = x.clone()                          # an inference tensor under inference_mode
        got, got_fisher = masked_grad_embeddings(model, x, mask), fisher_diagonal(model, x)
    assert torch.equal(got, expected)
    assert all(torch.equal(got_fisher[name], fisher[name]) for name in fisher)


def test_data_kinds_and_batch_sizes_agree():
    model, x, mask = _case("mlp")
    expected = masked_grad_embeddings(model, x, mask)
    bound = tol(torch.float64, terms=network_terms(model, x), magnitude=expected)
    y = torch.arange(len(x))
    for data, bs in [(x, 3), (TensorDataset(x, y), 2), (DataLoader(TensorDataset(x), 3), 99),
                     (_Stream(x), 3)]:
        torch.testing.assert_close(masked_grad_embeddings(model, data, mask, batch_size=bs,
                                                          progress=bs == 2),
                                   expected, **bound)
    assert masked_grad_embeddings(model, x, ParamMask(model, {})).shape == (len(x), 5, 0)


def test_out_is_filled_and_returned(tmp_path):
    model, x, mask = _case("mlp")
    # The same batch size on both sides: another one blocks the products differently, which
    # may round the last bit differently on some CPUs, and this test asks for equality.
    expected = masked_grad_embeddings(model, x, mask, batch_size=3)
    shape = expected.shape
    path = str(tmp_path / "emb.bin")
    out = torch.from_file(path, shared=True, size=shape.numel(), dtype=torch.float64).view(shape)
    assert masked_grad_embeddings(model, x, mask, out=out, batch_size=3) is out
    on_disk = torch.from_file(path, shared=False, size=shape.numel(), dtype=torch.float64)
    assert torch.equal(on_disk.view(shape), expected)
    for bad in (torch.empty(shape[0] + 1, *shape[1:], dtype=torch.float64),
                torch.empty(shape, dtype=torch.float32)):
        with pytest.raises(ValueError, match=r"out must be a torch.float64 tensor of shape"):
            masked_grad_embeddings(model, x, mask, out=bad)


def test_bad_inputs_raise_clear_errors():
    model, x, mask = _case("mlp")
    with pytest.raises(ValueError, match="weighting must be one of"):
        masked_grad_embeddings(model, x, mask, weighting="sqrt")
    other = MLP(in_features=12, num_classes=5, hidden=(8, 6)).double()
    with pytest.raises(ValueError, match="not built for this model.*features.1.weight"):
        masked_grad_embeddings(other, x, mask)
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        masked_grad_embeddings(model, x * float("nan"), mask)


def test_masked_parameter_of_unsupported_module_names_the_module():
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    ok = ParamMask(model, {"0.weight": [0, 5], "2.bias": [1]})     # LayerNorm unmasked: fine
    want = func_embeddings(model, x, ok, "sqrt_p")
    torch.testing.assert_close(masked_grad_embeddings(model, x, ok), want,
                               **tol(torch.float64, terms=network_terms(model, x), magnitude=want))
    with pytest.raises(TypeError, match=r"module '1' \(LayerNorm\), parameter '1.weight'"):
        masked_grad_embeddings(model, x, ParamMask(model, {"1.weight": [0]}))


def test_shuffling_dataloader_is_rejected():
    model = MLP(in_features=4, num_classes=3, hidden=(5,)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    mask = ParamMask(model, {n: torch.arange(2) for n, _ in model.named_parameters()})
    loader = DataLoader(TensorDataset(x), batch_size=2, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        masked_grad_embeddings(model, loader, mask)
    # Shuffling hidden inside a BatchSampler (the loader's own sampler is then sequential).
    hidden = DataLoader(TensorDataset(x), batch_sampler=BatchSampler(RandomSampler(x), 2, False))
    with pytest.raises(ValueError, match="draws with RandomSampler"):
        masked_grad_embeddings(model, hidden, mask)
    ordered = DataLoader(TensorDataset(x), batch_size=2)
    want = masked_grad_embeddings(model, x, mask)
    torch.testing.assert_close(masked_grad_embeddings(model, ordered, mask), want,
                               **tol(torch.float64, terms=network_terms(model, x), magnitude=want))
