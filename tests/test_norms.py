"""probes.implicit_bias.norms against torch.linalg, brute force and closed forms.

Per-layer norms against torch.linalg, path-norm against a brute-force sum over paths, invariance
under ReLU rescaling, the Fisher-Rao norm against its closed form.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from landscape.engine.params import no_bias_norm
from landscape.store.file import Store
from probes.implicit_bias.norms import FisherRao, Norms, fisher_rao, norms, path_norm

pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(bias: bool, seed: int = 0, widths=(3, 4, 3, 2)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def brute_force_path_norm(net: nn.Sequential) -> float:
    """Sum over every path of the product of the squared weights on it, by enumeration.

    A path goes from an input unit or a bias unit to an output unit.
    """
    net = copy.deepcopy(net).requires_grad_(False)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    total = 0.0
    # a path starts at layer `s` (an input unit when s == 0, else a bias unit of layer s - 1)
    for s in range(len(linears) + 1):
        if s == len(linears):  # paths made of an output bias alone
            if linears[-1].bias is not None:
                total += float((linears[-1].bias ** 2).sum())
            continue
        if s > 0 and linears[s - 1].bias is None:
            continue
        sizes = [linears[s].in_features] + [m.out_features for m in linears[s:]]
        for units in itertools.product(*(range(n) for n in sizes)):
            if s == 0:
                weight = 1.0
            else:  # starts at bias unit units[0] of layer s - 1
                weight = float(linears[s - 1].bias[units[0]] ** 2)
            for layer, (i, j) in zip(linears[s:], itertools.pairwise(units), strict=True):
                weight *= float(layer.weight[j, i] ** 2)
            total += weight
    return total


@pytest.mark.parametrize("bias", [False, True])
def test_path_norm_is_the_sum_over_paths(bias):
    net = mlp(bias)
    assert path_norm(net, (3,)) == pytest.approx(brute_force_path_norm(net), rel=1e-12)
    assert norms(net, input_shape=(3,)).path_norm == pytest.approx(path_norm(net, (3,)))


def test_path_norm_unchanged_by_rescaling_relu_units():
    net = mlp(True)
    x = torch.randn(7, 3, dtype=torch.float64)
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        for first, second, a in (
            (scaled[0], scaled[2], [0.3, 4.0, 1.0, 2.5]),
            (scaled[2], scaled[4], [5.0, 0.1, 2.0]),
        ):
            a = torch.tensor(a, dtype=torch.float64)
            first.weight.mul_(a[:, None])
            first.bias.mul_(a)
            second.weight.div_(a[None, :])
    torch.testing.assert_close(scaled(x), net(x))
    assert path_norm(scaled, (3,)) == pytest.approx(path_norm(net, (3,)), rel=1e-12)
    assert norms(scaled).sum_frobenius_sq != pytest.approx(norms(net).sum_frobenius_sq)


def test_conv_and_batchnorm_path_norm():
    torch.manual_seed(1)
    conv = nn.Conv1d(2, 3, 3, padding=1, bias=False).double()
    bn = nn.BatchNorm1d(3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    net = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), nn.Linear(15, 2)).double()
    # folding BatchNorm into the bias-free conv gives the same path-norm
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv1d(2, 3, 3, padding=1).double()
    with torch.no_grad():
        folded.weight.copy_(conv.weight * a[:, None, None])
        folded.bias.copy_(bn.bias - a * bn.running_mean)
    twin = nn.Sequential(folded, nn.ReLU(), nn.Flatten(), copy.deepcopy(net[4]))
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    net.train()
    torch.testing.assert_close(twin(x), net.eval()(x))
    net.train()
    assert path_norm(net, (2, 5)) == pytest.approx(path_norm(twin, (2, 5)), rel=1e-12)
    assert net.training and all(m.training for m in net)
    # without affine parameters
    plain = nn.Sequential(
        nn.Linear(3, 4, bias=False),
        nn.BatchNorm1d(4, affine=False),
        nn.ReLU(),
        nn.Linear(4, 1, bias=False),
    ).double()
    with torch.no_grad():
        plain[1].running_mean.uniform_(-1, 1)
        plain[1].running_var.uniform_(0.5, 2)
    s2 = 1 / (plain[1].running_var + plain[1].eps)
    w1, w2 = plain[0].weight ** 2, plain[3].weight ** 2
    want = float((w2 @ (s2 * w1.sum(1) + plain[1].running_mean ** 2 * s2)).detach())
    assert path_norm(plain, (3,)) == pytest.approx(want, rel=1e-12)


def test_path_norm_refuses_what_it_cannot_define():
    tanh = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match=r"module '1' \(Tanh\).*strict=False"):
        path_norm(tanh, (3,))
    assert path_norm(tanh, (3,), strict=False) > 0
    no_stats = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(ValueError, match="no running statistics"):
        path_norm(no_stats, (3,))
    with pytest.raises(ValueError, match="input_shape must be"):
        path_norm(mlp(False), 3)


def test_norms_against_torch_linalg_and_init():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 3)).double()
    start = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = norms(net, init=start)
    weights = [net[0].weight.detach().reshape(4, -1), net[3].weight.detach()]
    inits = [start[0].weight.detach().reshape(4, -1), start[3].weight.detach()]
    assert result.layers == ("0.weight", "3.weight") and result.shapes == ((4, 6), (3, 12))
    np.testing.assert_allclose(result.frobenius, [float(torch.linalg.norm(w)) for w in weights])
    np.testing.assert_allclose(
        result.spectral, [float(torch.linalg.svdvals(w)[0]) for w in weights]
    )
    diffs = [(w - w0).detach() for w, w0 in zip(weights, inits, strict=True)]
    np.testing.assert_allclose(result.dist_frobenius, [float(torch.linalg.norm(d)) for d in diffs])
    np.testing.assert_allclose(
        result.dist_spectral, [float(torch.linalg.svdvals(d)[0]) for d in diffs]
    )
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    flat0 = torch.cat([p.detach().reshape(-1) for p in start.parameters()])
    assert result.param_norm == pytest.approx(float(flat.norm()))
    assert result.dist_param_norm == pytest.approx(float((flat - flat0).norm()))
    assert result.prod_spectral == pytest.approx(float(np.prod(result.spectral)))
    assert result.log_prod_frobenius == pytest.approx(float(np.log(result.frobenius).sum()))
    assert result.sum_spectral_sq == pytest.approx(float((result.spectral**2).sum()))
    assert result.path_norm is None
    # init as a state dict and as flat vectors (all parameters, or the selected ones)
    for init in (start.state_dict(), flat0):
        assert norms(net, init=init).dist_param_norm == pytest.approx(result.dist_param_norm)
    weights_only = norms(
        net,
        init=torch.cat([start[0].weight.reshape(-1), start[3].weight.reshape(-1)]),
        params=no_bias_norm,
    )
    np.testing.assert_allclose(weights_only.dist_frobenius, result.dist_frobenius)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_norms_bad_input():
    net = mlp(True)
    with pytest.raises(ValueError, match="norms: expected at least one layer"):
        norms(net, params=["0.bias"])
    with pytest.raises(
        ValueError,
        match=r"norms: a flat init must have 39 entries \(the "
        r"selected parameters\), got 5",
    ):
        norms(net, init=torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"norms: init\['0.weight'\] must have shape"):
        norms(net, init={k: torch.zeros(1) for k in net.state_dict()})
    with pytest.raises(TypeError, match="norms: init must be a model"):
        norms(net, init=[1, 2])
    with pytest.raises(TypeError, match="norms: expected model to be a torch.nn.Module"):
        norms("model")


def test_fisher_rao_equals_its_relu_closed_form():
    net = mlp(False)
    torch.manual_seed(3)
    x, y = torch.randn(11, 3, dtype=torch.float64), torch.randint(0, 2, (11,))
    loss = nn.CrossEntropyLoss()
    result = fisher_rao(net, loss, (x, y), chunk_size=4)
    out = net(x).detach()
    dl_df = torch.softmax(out, 1) - nn.functional.one_hot(y, 2)  # d ell_i / d f
    closed = 3**2 * float(((dl_df * out).sum(1) ** 2).mean())  # depth D = 3
    assert result.squared == pytest.approx(closed, rel=1e-10)
    assert result.value == pytest.approx(closed**0.5, rel=1e-10)
    # the general definition with biases: a loop over examples, one backward each
    biased = mlp(True)
    inner = []
    for i in range(11):
        grads = torch.autograd.grad(
            loss(biased(x[i : i + 1]), y[i : i + 1]), list(biased.parameters())
        )
        pairs = zip(grads, biased.parameters(), strict=True)
        inner.append(sum(float((g * p.detach()).sum()) for g, p in pairs))
    got = fisher_rao(biased, loss, (x, y))
    np.testing.assert_allclose(got.inner, inner, rtol=1e-10)
    with pytest.raises(ValueError, match="fisher_rao: chunk_size must be an int >= 1"):
        fisher_rao(net, loss, (x, y), chunk_size=0)


def test_records_round_trip(tmp_path):
    net = mlp(True)
    torch.manual_seed(4)
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))
    full = norms(net, init=mlp(True, seed=1), input_shape=(3,))
    bare = norms(net)
    fr = fisher_rao(net, nn.CrossEntropyLoss(), (x, y))
    with Store(tmp_path / "n.h5", "w") as store:
        for name, result in (("full", full), ("bare", bare), ("fr", fr)):
            arrays, attrs = result.to_record()
            store.write_record(None, "probes", name, arrays=arrays, attrs=attrs)
    with Store(tmp_path / "n.h5") as store:
        back = {n: store.record(None, "probes", n) for n in ("full", "bare", "fr")}
    pairs = [
        (full, Norms.from_record(back["full"])),
        (bare, Norms.from_record(back["bare"])),
        (fr, FisherRao.from_record(back["fr"])),
    ]
    for before, after in pairs:
        for field in before.__dataclass_fields__:
            a, b = getattr(before, field), getattr(after, field)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), field
            else:
                assert type(a) is type(b) and a == b, (field, a, b)
    with pytest.raises(ValueError, match="Norms.from_record: record 'fr' holds"):
        Norms.from_record(back["fr"])
