"""Dataset loaders on small files in the standard formats, written here; the imbalance spec."""
import math

import numpy as np
import pytest
import torch
from testing import write_cifar10

from fishermask_ext.al import data
from fishermask_ext.testing import tol


def _standardise(raw):
    x = torch.as_tensor(raw, dtype=torch.float32) / 255
    return x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)


def _standard_tol(x):
    """tol for standardised images x [n, channels, H, W] in float32, the same formula in
    another order: a channel's mean and std sum its K = n·H·W values, which torch reduces
    pairwise (ATen's cascade sum), a chain of about log2 K additions each (K itself, the bound
    of a sum in sequence, would allow 5% here); squares, divisions, a square root, then
    (x - mean) / std: 2·log2 K + 6."""
    K = x.shape[0] * x[0, 0].numel()
    return tol(torch.float32, terms=2 * math.ceil(math.log2(K)) + 6, magnitude=x)


def test_fashion_mnist_reader(fashion_dir):
    folder, (tr_x, tr_y, te_x, te_y) = fashion_dir
    x, y, tx, ty = data.load("fashion-mnist", data_dir=str(folder))
    assert x.shape == (600, 1, 28, 28) and tx.shape == (100, 1, 28, 28) and x.dtype == torch.float32
    assert y.tolist() == tr_y.tolist() and ty.tolist() == te_y.tolist()
    mean, std = _standardise(tr_x[:, None])
    torch.testing.assert_close(x, (torch.as_tensor(tr_x[:, None], dtype=torch.float32) / 255
                                   - mean) / std, **_standard_tol(x))
    torch.testing.assert_close(tx, (torch.as_tensor(te_x[:, None], dtype=torch.float32) / 255
                                    - mean) / std, **_standard_tol(x))


def test_fashion_mnist_missing_names_files_and_places(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(tmp_path / "system"))
    with pytest.raises(FileNotFoundError) as err:
        data.load("fashion-mnist")
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path / "system") in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_a_data_dir_without_the_data_is_an_error_not_the_system_copy(fashion_dir, tmp_path,
                                                                      monkeypatch):
    """Issue 24, item 4: a given --data-dir that lacks the files no longer falls back to the
    system copy (which then ran its whole 60,000-image pool)."""
    system, _ = fashion_dir
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(system))   # the system copy is there
    assert len(data.load("fashion-mnist")[1]) == 600
    with pytest.raises(FileNotFoundError) as err:
        data.load("fashion-mnist", data_dir=str(tmp_path / "nonexistent"))
    msg = str(err.value)
    assert f"--data-dir {tmp_path / 'nonexistent'} does not hold Fashion-MNIST" in msg
    assert "train-images-idx3-ubyte.gz" in msg


@pytest.mark.parametrize("key", ["pool_size", "test_size"])
def test_a_subset_larger_than_the_data_is_an_error(key):
    """Issue 24, item 3: --pool-size 100000 on digits (1,347 training images) ran on all of
    them while config.json recorded 100000."""
    n = len(data.load("digits")[1 if key == "pool_size" else 3])
    assert len(data.load("digits", **{key: n})[1 if key == "pool_size" else 3]) == n
    flag = "--" + key.replace("_", "-")
    with pytest.raises(ValueError, match=f"{key} \\({flag}\\) is {n + 1}, but there are only"):
        data.load("digits", **{key: n + 1})


def test_idx_reader_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(ValueError, match="holds 2 values but its header says"):
        data.read_idx(tmp_path / "short")


def test_cifar10_reader(tmp_path):
    rng = np.random.default_rng(1)
    batches = {name: (rng.integers(0, 256, (3, 3072), dtype=np.uint8),
                      rng.integers(0, 10, 3).tolist()) for name in data.CIFAR10_FILES}
    write_cifar10(tmp_path, batches)
    x, y, tx, ty = data.load("cifar10", data_dir=str(tmp_path))
    assert x.shape == (15, 3, 32, 32) and tx.shape == (3, 3, 32, 32)
    raw = np.concatenate([batches[n][0] for n in data.CIFAR10_FILES[:5]])
    assert y.tolist() == sum((batches[n][1] for n in data.CIFAR10_FILES[:5]), [])
    assert ty.tolist() == batches["test_batch"][1]
    img = raw.reshape(15, 3, 32, 32)            # rows are 1,024 red, green, then blue values
    mean, std = _standardise(img)
    torch.testing.assert_close(x, (torch.as_tensor(img, dtype=torch.float32) / 255 - mean) / std,
                               **_standard_tol(x))
    with pytest.raises(FileNotFoundError, match="data_batch_1.*cifar-10-batches-py"):
        data.load("cifar10", data_dir=str(tmp_path / "nowhere"))


def test_digits_split_is_seeded_stratified_and_normalised():
    x, y, tx, ty = data.load("digits")
    assert x.shape == (1347, 1, 8, 8) and tx.shape == (450, 1, 8, 8)
    bound = _standard_tol(x)["atol"]              # the mean and std it was standardised with
    assert abs(float(x.mean())) <= bound and abs(float(x.std()) - 1) <= bound
    per_class = torch.bincount(torch.cat([y, ty]), minlength=10)
    assert ((torch.bincount(ty, minlength=10) - per_class / 4).abs() <= 1).all()   # stratified
    again = data.load("digits")
    assert torch.equal(x, again[0]) and torch.equal(ty, again[3])
    other = data.load("digits", split_seed=1)
    assert not torch.equal(ty, other[3])
    small = data.load("digits", pool_size=100, test_size=50)
    assert small[0].shape[0] == 100 and small[2].shape[0] == 50


def test_parse_imbalance():
    assert data.parse_imbalance("0:250, 1:5000,2:250") == {0: 250, 1: 5000, 2: 250}
    for bad in ("0-250", "0:250,0:10", "1:0", "", "a:b"):
        with pytest.raises(ValueError, match="imbalance"):
            data.parse_imbalance(bad)


def test_imbalanced_digits():
    x, y, tx, ty = data.load("digits", imbalance="2:10,5:100,7:30")
    assert torch.bincount(y).tolist() == [10, 100, 30]          # 5 has only ~136 train images
    assert sorted(set(ty.tolist())) == [0, 1, 2]
    full = data.load("digits")
    assert len(ty) == int(sum((full[3] == c).sum() for c in (2, 5, 7)))
    with pytest.raises(ValueError, match=r"classes \[12\] that the data does not have"):
        data.load("digits", imbalance="1:5,12:5")


@pytest.mark.parametrize("opts", [{}, {"imbalance": "2:10,5:100,7:30", "pool_size": 90}])
def test_class_pool_order_sorts_the_same_images_by_label(opts):
    x, y, tx, ty = data.load("digits", **opts)
    cx, cy, ctx, cty = data.load("digits", pool_order="class", **opts)
    assert torch.equal(ctx, tx) and torch.equal(cty, ty)           # the test set is untouched
    order = torch.argsort(y, stable=True)
    assert torch.equal(cy, y[order])
    # Same images; the pool's mean and std, summed in another order, may round differently.
    torch.testing.assert_close(cx, x[order], **_standard_tol(x))
    assert not torch.equal(cy, y)                  # the source's order was not sorted already
    with pytest.raises(ValueError,
                       match="pool_order must be one of 'dataset', 'class', got 'sorted'"):
        data.load("digits", pool_order="sorted")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError,
                       match="dataset must be one of 'cifar10', 'digits', 'fashion-mnist'"):
        data.load("mnist")


def test_torchvision_names():
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ImportError, match="needs torchvision, which does not import"):
            data.load("torchvision:MNIST")
    else:
        with pytest.raises(ValueError, match="no dataset 'NoSuchSet'"):
            data.load("torchvision:NoSuchSet")
