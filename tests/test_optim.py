"""Optimizers and learning-rate schedules (``resnet_np.optim``).

First, by hand: a few steps of each optimizer on a one-number parameter,
the expected values written out from the update rules in the docstrings;
then the bookkeeping — frozen parameters and missing gradients left alone,
float32 kept, parameter groups, ``state_dict`` round trips (bit-identical
resumption) and their errors; then the schedules, by hand and through
``state_dict``. Last, where PyTorch is installed: ten steps with the same
random gradients give the parameters ``torch.optim`` gives (within 1e-12,
float64), and the schedules give ``torch.optim.lr_scheduler``'s rates.
"""

import json
import math
import warnings

import numpy as np
import pytest

from resnet_np import Parameter, backend
from resnet_np.optim import SGD, Adam, AdamW, CosineAnnealingLR, LinearWarmup, MultiStepLR, Optimizer, StepLR


def scalar_param(value=1.0, dtype="float64"):
    return Parameter(np.array([value], dtype=dtype))


def run_steps(opt, p, grads):
    """Step ``opt`` once per gradient in ``grads``; returns the parameter's value after each step."""
    values = []
    for g in grads:
        p.grad = np.array([g], dtype=p.dtype)
        opt.step()
        values.append(float(p.data[0]))
    return values


# -- SGD by hand -------------------------------------------------------------------------
# lr = 0.1, p_0 = 1 and gradient 1 at every step unless said otherwise.

SGD_CASES = {
    # p <- p - 0.1 g, with g = 1, -2, 0.5
    "plain": ({}, [1.0, -2.0, 0.5], [0.9, 1.1, 1.05]),
    # b = 1, 1.9, 2.71; p = 1 - 0.1, 0.9 - 0.19, 0.71 - 0.271
    "momentum": ({"momentum": 0.9}, [1.0] * 3, [0.9, 0.71, 0.439]),
    # b_1 = g_1 = 1 (no dampening at the first step), b = 0.9 b + 0.5 g: 1.4, 1.76
    "dampening": ({"momentum": 0.9, "dampening": 0.5}, [1.0] * 3, [0.9, 0.76, 0.584]),
    # b = 1, 1.9, 2.71; g + 0.9 b = 1.9, 2.71, 3.439
    "nesterov": ({"momentum": 0.9, "nesterov": True}, [1.0] * 3, [0.81, 0.539, 0.1951]),
    # g = 1 + 0.1 p: 1.1, 1.089, 1.07811
    "weight_decay": ({"weight_decay": 0.1}, [1.0] * 3, [0.89, 0.7811, 0.673289]),
    # g = 1 + 0.1 p = 1.1, 1.089, 1.06821; b = 1.1, 2.079, 2.93931 (decay goes through the momentum)
    "weight_decay_momentum": ({"momentum": 0.9, "weight_decay": 0.1}, [1.0] * 3, [0.89, 0.6821, 0.388169]),
}


@pytest.mark.parametrize("name", list(SGD_CASES))
def test_sgd_by_hand(name):
    options, grads, expected = SGD_CASES[name]
    p = scalar_param()
    values = run_steps(SGD([p], lr=0.1, **options), p, grads)
    assert values == pytest.approx(expected, rel=1e-12, abs=1e-14)


# -- Adam and AdamW by hand ---------------------------------------------------------------
# lr = 0.1, betas (0.9, 0.999), eps 1e-8, p_0 = 1, gradients 1, 2, -1.
# m = 0.1, 0.29, 0.161 and v = 0.001, 0.004999, 0.005994001;
# bias corrections 1 - 0.9^t = 0.1, 0.19, 0.271 and 1 - 0.999^t = 0.001, 0.001999, 0.002997001.

ADAM_GRADS = [1.0, 2.0, -1.0]
ADAM_UPDATES = [  # lr * m_hat / (sqrt(v_hat) + eps), step by step
    0.1 * (0.1 / 0.1) / (math.sqrt(0.001 / 0.001) + 1e-8),
    0.1 * (0.29 / 0.19) / (math.sqrt(0.004999 / 0.001999) + 1e-8),
    0.1 * (0.161 / 0.271) / (math.sqrt(0.005994001 / 0.002997001) + 1e-8),
]


def test_adam_by_hand():
    p = scalar_param()
    values = run_steps(Adam([p], lr=0.1), p, ADAM_GRADS)
    p1 = 1 - ADAM_UPDATES[0]
    p2 = p1 - ADAM_UPDATES[1]
    p3 = p2 - ADAM_UPDATES[2]
    assert values == pytest.approx([p1, p2, p3], rel=1e-12)


def test_adam_weight_decay_by_hand():
    # L2: g <- g + 0.1 p enters m and v. Step 1: g = 1.1, m_hat = 1.1, v_hat = 1.21.
    p = scalar_param()
    values = run_steps(Adam([p], lr=0.1, weight_decay=0.1), p, [1.0, 2.0])
    p1 = 1 - 0.1 * 1.1 / (1.1 + 1e-8)
    g2 = 2 + 0.1 * p1
    m2 = 0.9 * (0.1 * 1.1) + 0.1 * g2
    v2 = 0.999 * (0.001 * 1.21) + 0.001 * g2 ** 2
    p2 = p1 - 0.1 * (m2 / 0.19) / (math.sqrt(v2 / 0.001999) + 1e-8)
    assert values == pytest.approx([p1, p2], rel=1e-12)


def test_adamw_by_hand():
    # Decoupled: p <- p (1 - 0.1 * 0.1) first, then the Adam step on the bare gradient.
    p = scalar_param()
    values = run_steps(AdamW([p], lr=0.1, weight_decay=0.1), p, ADAM_GRADS)
    p1 = 1 * 0.99 - ADAM_UPDATES[0]
    p2 = p1 * 0.99 - ADAM_UPDATES[1]
    p3 = p2 * 0.99 - ADAM_UPDATES[2]
    assert values == pytest.approx([p1, p2, p3], rel=1e-12)


def test_adamw_default_weight_decay_is_1e_2():
    opt = AdamW([scalar_param()])
    assert opt.param_groups[0]["weight_decay"] == 1e-2
    assert Adam([scalar_param()]).param_groups[0]["weight_decay"] == 0


def test_adam_state_holds_step_count_and_moments():
    p = scalar_param()
    opt = Adam([p], lr=0.1)
    run_steps(opt, p, ADAM_GRADS)
    state = opt.state[p]
    assert state["step"] == 3 and isinstance(state["step"], int)
    assert state["exp_avg"][0] == pytest.approx(0.161, rel=1e-12)
    assert state["exp_avg_sq"][0] == pytest.approx(0.005994001, rel=1e-12)


def test_sgd_without_momentum_keeps_no_state():
    p = scalar_param()
    opt = SGD([p], lr=0.1, weight_decay=0.1)
    run_steps(opt, p, [1.0])
    assert opt.state == {} and opt.state_dict()["state"] == {}


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("make, message", [
    (lambda ps: SGD(ps, lr=-0.1), "learning rate"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "Nesterov"),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.9), "momentum"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda ps: Adam(ps, lr=-1), "learning rate"),
    (lambda ps: Adam(ps, betas=(0.9, 1.0)), "betas"),
    (lambda ps: AdamW(ps, eps=-1), "eps"),
    (lambda ps: SGD([], lr=0.1), "empty"),
])
def test_invalid_options_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make([scalar_param()])


def test_params_must_be_parameters_in_one_group_only():
    p, q = scalar_param(), scalar_param()
    with pytest.raises(TypeError, match="single Parameter"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="Parameters"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p, q]}], lr=0.1)


# -- what a step leaves alone ------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    "nesterov": lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True),
    "adam": lambda ps: Adam(ps, lr=0.1, weight_decay=0.1),
    "adamw": lambda ps: AdamW(ps, lr=0.1, weight_decay=0.1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_and_gradless_parameters_are_left_bit_identical(name):
    rng = np.random.default_rng(1)
    frozen = Parameter(rng.standard_normal((3, 2)), requires_grad=False)
    gradless = Parameter(rng.standard_normal(4))
    trained = Parameter(rng.standard_normal(5))
    before = {"frozen": frozen.data.copy(), "gradless": gradless.data.copy(), "trained": trained.data.copy()}
    opt = OPTIMIZERS[name]([frozen, gradless, trained])
    for _ in range(3):
        frozen.grad = rng.standard_normal((3, 2))  # a stray gradient must not move a frozen parameter
        trained.grad = rng.standard_normal(5)
        opt.step()
    assert np.array_equal(frozen.data, before["frozen"])
    assert np.array_equal(gradless.data, before["gradless"])
    assert not np.array_equal(trained.data, before["trained"])
    assert list(opt.state) in ([], [trained])  # no state for parameters never updated


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_stays_float32_and_updates_happen_in_place(name):
    rng = np.random.default_rng(2)
    p = Parameter(rng.standard_normal((4, 3)).astype(np.float32))
    array = p.data
    opt = OPTIMIZERS[name]([p])
    for _ in range(3):
        p.grad = rng.standard_normal((4, 3)).astype(np.float32)
        opt.step()
    assert p.data is array  # updated in place: references to p.data stay valid
    assert p.data.dtype == np.float32
    for value in opt.state[p].values():
        if hasattr(value, "dtype"):
            assert value.dtype == np.float32


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_step_does_not_modify_the_gradient(name):
    rng = np.random.default_rng(3)
    p = Parameter(rng.standard_normal(6))
    opt = OPTIMIZERS[name]([p])
    for _ in range(2):
        p.grad = rng.standard_normal(6)
        g = p.grad.copy()
        opt.step()
        assert np.array_equal(p.grad, g)


def test_zero_grad_sets_every_gradient_to_none():
    p, q = scalar_param(), scalar_param()
    opt = SGD([{"params": [p]}, {"params": [q]}], lr=0.1)
    p.grad, q.grad = np.ones(1), np.ones(1)
    opt.zero_grad()
    assert p.grad is None and q.grad is None


def test_step_returns_the_closure_loss():
    p = scalar_param()
    opt = SGD([p], lr=0.1)

    def closure():
        p.grad = np.array([2.0])
        return 4.0

    assert opt.step(closure) == 4.0
    assert p.data[0] == pytest.approx(0.8)


# -- parameter groups --------------------------------------------------------------------


def test_param_groups_have_their_own_learning_rates():
    backbone, head = scalar_param(), scalar_param()
    opt = SGD([{"params": [backbone], "lr": 0.01}, {"params": [head]}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.9]  # filled in from the defaults
    backbone.grad, head.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    assert backbone.data[0] == pytest.approx(1 - 0.01)
    assert head.data[0] == pytest.approx(1 - 0.1)


def test_add_param_group():
    p, q = scalar_param(), scalar_param()
    opt = Adam([p], lr=0.1)
    opt.add_param_group({"params": q, "lr": 0.5})  # a single Parameter is accepted
    assert opt.param_groups[1]["params"] == [q]
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    q.grad = np.array([3.0])
    opt.step()
    assert q.data[0] == pytest.approx(1 - 0.5, rel=1e-7)  # Adam's first step moves by ~lr
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})
    with pytest.raises(ValueError, match="'params'"):
        opt.add_param_group({"lr": 0.1})


def test_groups_can_be_given_as_a_generator_of_parameters():
    params = [scalar_param(), scalar_param()]
    opt = SGD(iter(params), lr=0.1)
    assert opt.param_groups[0]["params"] == params


# -- state_dict ------------------------------------------------------------------------


def make_model(rng):
    """Two groups: [w (3,4), unused (2,)] and [b (4,)]; ``unused`` never gets a gradient."""
    return [Parameter(rng.standard_normal((3, 4))), Parameter(rng.standard_normal(2)),
            Parameter(rng.standard_normal(4))]


def build(name, params, lr=0.1):
    w, unused, b = params
    groups = [{"params": [w, unused]}, {"params": [b], "lr": lr / 10}]
    return {
        "sgd": lambda: SGD(groups, lr=lr, momentum=0.9, dampening=0.1, weight_decay=1e-2),
        "nesterov": lambda: SGD(groups, lr=lr, momentum=0.9, weight_decay=1e-2, nesterov=True),
        "adam": lambda: Adam(groups, lr=lr, weight_decay=1e-2),
        "adamw": lambda: AdamW(groups, lr=lr, betas=(0.8, 0.99)),
    }[name]()


def train(opt, params, grads):
    w, _, b = params
    for gw, gb in grads:
        w.grad, b.grad = gw.copy(), gb.copy()
        opt.step()


def json_round_trip(state_dict):
    """The state dict as a checkpoint would keep it: arrays as they are, everything else through JSON."""
    return {"state": state_dict["state"], "param_groups": json.loads(json.dumps(state_dict["param_groups"]))}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_resumes_bit_identically(name):
    rng = np.random.default_rng(4)
    grads = [(rng.standard_normal((3, 4)), rng.standard_normal(4)) for _ in range(5)]
    params = make_model(np.random.default_rng(5))
    opt = build(name, params)
    train(opt, params, grads[:3])
    saved_params = [p.data.copy() for p in params]
    saved = json_round_trip(opt.state_dict())
    train(opt, params, grads[3:])  # the original carries on

    resumed = [Parameter(a.copy()) for a in saved_params]
    fresh = build(name, resumed, lr=123.0)  # wrong hyper-parameters: loading must restore them
    fresh.load_state_dict(saved)
    train(fresh, resumed, grads[3:])
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p.data, q.data)
    assert [g["lr"] for g in fresh.param_groups] == [0.1, 0.01]


def test_state_dict_layout_numbers_parameters_across_groups():
    rng = np.random.default_rng(6)
    params = make_model(rng)
    opt = build("adam", params)
    train(opt, params, [(rng.standard_normal((3, 4)), rng.standard_normal(4))])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 2]  # parameter 1 never had a gradient
    assert sorted(sd["state"][0]) == ["exp_avg", "exp_avg_sq", "step"]
    assert sd["param_groups"][1] == {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2,
                                     "params": [2]}
    # The state dict holds copies: a later step does not change it.
    before = sd["state"][0]["exp_avg"].copy()
    train(opt, params, [(rng.standard_normal((3, 4)), rng.standard_normal(4))])
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_is_json_serialisable_except_the_arrays(name):
    rng = np.random.default_rng(7)
    params = make_model(rng)
    opt = build(name, params)
    train(opt, params, [(rng.standard_normal((3, 4)), rng.standard_normal(4))] * 2)
    sd = opt.state_dict()
    arrays = 0
    without_arrays = {"state": {}, "param_groups": sd["param_groups"]}
    for i, s in sd["state"].items():
        assert isinstance(i, int)
        without_arrays["state"][i] = {}
        for key, value in s.items():
            if isinstance(value, np.ndarray):
                arrays += 1
                value = None
            without_arrays["state"][i][key] = value
    assert arrays > 0
    json.dumps(without_arrays)  # no NumPy scalars, no objects


def test_load_state_dict_with_mismatched_groups_is_a_clear_error():
    rng = np.random.default_rng(8)
    params = make_model(rng)
    opt = build("sgd", params)
    train(opt, params, [(rng.standard_normal((3, 4)), rng.standard_normal(4))])
    sd = opt.state_dict()

    one_group = SGD(make_model(rng), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="2 parameter groups, this optimizer has 1"):
        one_group.load_state_dict(sd)

    w, unused, b = make_model(rng)
    other_sizes = SGD([{"params": [w]}, {"params": [unused, b]}], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="parameter group 0 has 2 parameters in the loaded state dict, 1 in this"):
        other_sizes.load_state_dict(sd)

    swapped = [Parameter(np.zeros((4, 3))), Parameter(np.zeros(2)), Parameter(np.zeros(4))]
    target = build("sgd", swapped)
    with pytest.raises(ValueError, match=r"shape \(3, 4\), the parameter has shape \(4, 3\)"):
        target.load_state_dict(sd)
    assert target.state == {} and target.param_groups[0]["params"][0] is swapped[0]  # nothing changed


def test_load_state_dict_casts_floating_state_to_the_parameter_dtype():
    p = Parameter(np.ones(3, dtype=np.float32))
    opt = Adam([p], lr=0.1)
    sd = {"state": {0: {"step": np.array(4), "exp_avg": np.full(3, 0.5), "exp_avg_sq": np.full(3, 0.25)}},
          "param_groups": [{"lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0, "params": [0]}]}
    opt.load_state_dict(sd)
    assert opt.state[p]["exp_avg"].dtype == np.float32
    assert opt.state[p]["step"] == 4 and isinstance(opt.state[p]["step"], int)  # a 0-d array from an .npz
    assert opt.state[p]["exp_avg"] is not sd["state"][0]["exp_avg"]
    p.grad = np.ones(3, dtype=np.float32)
    opt.step()
    assert p.data.dtype == np.float32 and opt.state[p]["step"] == 5


@pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a visible GPU is needed")
def test_cupy_parameters_update_like_numpy_and_load_state_onto_the_gpu():
    import cupy
    rng = np.random.default_rng(9)
    grads = [(rng.standard_normal((3, 4)), rng.standard_normal(4)) for _ in range(4)]
    for name in OPTIMIZERS:
        host = make_model(np.random.default_rng(10))
        gpu = [Parameter(cupy.asarray(p.data)) for p in host]
        host_opt, gpu_opt = build(name, host), build(name, gpu)
        train(host_opt, host, grads[:2])
        train(gpu_opt, gpu, [(cupy.asarray(a), cupy.asarray(b)) for a, b in grads[:2]])
        gpu_opt.load_state_dict(host_opt.state_dict())  # NumPy state onto the GPU
        assert all(isinstance(v, cupy.ndarray) for s in gpu_opt.state.values() for v in s.values()
                   if hasattr(v, "shape"))
        train(host_opt, host, grads[2:])
        train(gpu_opt, gpu, [(cupy.asarray(a), cupy.asarray(b)) for a, b in grads[2:]])
        for p, q in zip(host, gpu):
            np.testing.assert_allclose(cupy.asnumpy(q.data), p.data, rtol=1e-12, atol=1e-14)


# -- schedules by hand -----------------------------------------------------------------


def lr_sequence(sched, steps):
    """The lr after construction and after each of ``steps`` calls of step(), checked against the optimizer."""
    lrs = []
    for _ in range(steps + 1):
        last = sched.get_last_lr()
        assert [g["lr"] for g in sched.optimizer.param_groups] == last
        lrs.append(last[0])
        sched.step()
    return lrs


def sgd(lr=1.0, groups=1):
    params = [scalar_param() for _ in range(groups)]
    if groups == 1:
        return SGD(params, lr=lr)
    return SGD([{"params": [p], "lr": lr / 10 ** i} for i, p in enumerate(params)], lr=lr)


def test_step_lr_by_hand():
    sched = StepLR(sgd(), step_size=3, gamma=0.1)
    assert lr_sequence(sched, 7) == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01], rel=1e-12)
    assert sched.last_epoch == 8 and sched.base_lrs == [1.0]


def test_multistep_lr_by_hand():
    sched = MultiStepLR(sgd(), milestones=[5, 2], gamma=0.5)  # unsorted is fine
    assert lr_sequence(sched, 6) == pytest.approx([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25], rel=1e-12)


def test_multistep_lr_paper_schedule_per_iteration():
    sched = MultiStepLR(sgd(lr=0.1), milestones=[32000, 48000])
    lrs = {}
    for it in range(48001):
        if it in (0, 31999, 32000, 47999, 48000):
            lrs[it] = sched.get_last_lr()[0]
        sched.step()
    assert lrs == pytest.approx({0: 0.1, 31999: 0.1, 32000: 0.01, 47999: 0.01, 48000: 0.001}, rel=1e-12)


def test_cosine_annealing_by_hand():
    sched = CosineAnnealingLR(sgd(), T_max=4, eta_min=0.1)
    c = math.cos(math.pi / 4)
    expected = [1, 0.1 + 0.9 * (1 + c) / 2, 0.55, 0.1 + 0.9 * (1 - c) / 2, 0.1, 0.1 + 0.9 * (1 - c) / 2]
    assert lr_sequence(sched, 5) == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_by_hand():
    sched = LinearWarmup(sgd(), warmup_steps=4, start_factor=0.1)
    assert lr_sequence(sched, 6) == pytest.approx([0.1, 0.325, 0.55, 0.775, 1, 1, 1], rel=1e-12)


def test_linear_warmup_hands_over_to_cosine():
    opt = sgd()
    cosine = CosineAnnealingLR(opt, T_max=4)
    sched = LinearWarmup(opt, warmup_steps=2, start_factor=0.5, after=cosine)
    assert sched.base_lrs == [1.0]
    c = math.cos(math.pi / 4)
    expected = [0.5, 0.75, 1, (1 + c) / 2, 0.5, (1 - c) / 2, 0]
    assert lr_sequence(sched, 6) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert cosine.last_epoch == 5  # its clock started when the warm-up ended (7 steps - 2)


def test_base_lrs_come_from_the_lr_before_any_scheduler():
    # As in PyTorch: the first scheduler records group["initial_lr"]; later ones start from it,
    # not from whatever lr an earlier scheduler has set (here 0.5 from a milestone at step 0).
    opt = sgd(lr=1.0)
    halved = MultiStepLR(opt, milestones=[0], gamma=0.5)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["initial_lr"] == 1.0
    sched = LinearWarmup(opt, warmup_steps=2, start_factor=0.5, after=halved)
    assert sched.base_lrs == [1.0]
    assert lr_sequence(sched, 3) == pytest.approx([0.5, 0.75, 0.5, 0.5], rel=1e-12)
    json.dumps(opt.state_dict()["param_groups"])  # initial_lr is saved with the groups, as a float


def test_schedules_scale_each_group_from_its_own_base_lr():
    opt = sgd(lr=1.0, groups=2)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    sched.step()
    assert sched.base_lrs == [1.0, 0.1]
    assert sched.get_last_lr() == pytest.approx([0.25, 0.025], rel=1e-12)
    assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()


def make_schedule(kind, opt, variant=0):
    """One of each scheduler; ``variant=1`` gives other options, which loading must overwrite."""
    if kind == "step":
        return StepLR(opt, step_size=3 + 10 * variant, gamma=0.5)
    if kind == "multistep":
        return MultiStepLR(opt, milestones=[4, 9] if not variant else [1], gamma=0.3)
    if kind == "cosine":
        return CosineAnnealingLR(opt, T_max=15 + variant, eta_min=0.01)
    if kind == "warmup":
        return LinearWarmup(opt, warmup_steps=5 - variant, start_factor=0.2)
    return LinearWarmup(opt, warmup_steps=5, start_factor=0.2 + 0.5 * variant,
                        after=CosineAnnealingLR(opt, T_max=12 + variant))


@pytest.mark.parametrize("kind", ["step", "multistep", "cosine", "warmup", "warmup_cosine"])
def test_scheduler_state_dict_round_trip_through_json(kind):
    opt = sgd(lr=0.5, groups=2)
    sched = make_schedule(kind, opt)
    for _ in range(7):
        sched.step()
    saved = json.loads(json.dumps(sched.state_dict()))
    expected = [sched.get_last_lr()]
    for _ in range(10):
        sched.step()
        expected.append(sched.get_last_lr())

    fresh_opt = sgd(lr=99.0, groups=2)
    fresh = make_schedule(kind, fresh_opt, variant=1)
    fresh.load_state_dict(saved)
    assert fresh.last_epoch == 7
    got = [fresh.get_last_lr()]
    assert [g["lr"] for g in fresh_opt.param_groups] == got[0]  # loading sets the lr at once
    for _ in range(10):
        fresh.step()
        got.append(fresh.get_last_lr())
    assert got == expected  # exactly: a closed form of the step count


def test_scheduler_load_state_dict_errors():
    sd = StepLR(sgd(), step_size=3).state_dict()
    with pytest.raises(ValueError, match="expected keys"):
        CosineAnnealingLR(sgd(), T_max=5).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 base learning rates, the optimizer has 2"):
        StepLR(sgd(groups=2), step_size=3).load_state_dict(sd)


def test_scheduler_option_errors():
    opt = sgd()
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="start_factor"):
        LinearWarmup(opt, warmup_steps=3, start_factor=1.5)
    with pytest.raises(ValueError, match="same optimizer"):
        LinearWarmup(opt, warmup_steps=3, after=StepLR(sgd(), step_size=3))


def test_optimizer_base_class_needs_an_update_rule():
    opt = Optimizer([scalar_param()], {"lr": 0.1})
    opt.param_groups[0]["params"][0].grad = np.ones(1)
    with pytest.raises(NotImplementedError):
        opt.step()


# ======================================================================================
# Parity with PyTorch (skipped where torch is not installed)
# ======================================================================================


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed: the torch.optim parity checks are skipped")


def rel_error(a, b):
    return np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b)))


SHAPES = [(3, 4), (5,), (2, 3, 2)]


def compare_with_torch(torch, ours, theirs, steps=10, groups=((0, 1, 2),), group_options=({},)):
    """Run our optimizer class and torch's with the same options on the same parameters and gradients.

    ``groups`` lists which parameters go in each group and ``group_options``
    each group's own options. Returns the worst relative error over the
    parameters, checked after every step.
    """
    rng = np.random.default_rng(11)
    initial = [rng.standard_normal(s) for s in SHAPES]
    mine = [Parameter(a.copy()) for a in initial]
    tensors = [torch.tensor(a.copy(), dtype=torch.float64) for a in initial]
    opt = ours([{"params": [mine[i] for i in g], **o} for g, o in zip(groups, group_options)])
    topt = theirs([{"params": [tensors[i] for i in g], **o} for g, o in zip(groups, group_options)])
    worst = 0.0
    for _ in range(steps):
        for p, t, s in zip(mine, tensors, SHAPES):
            g = rng.standard_normal(s)
            p.grad = g.copy()
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, t in zip(mine, tensors):
            worst = max(worst, rel_error(p.data, t.numpy()))
    return worst


SGD_OPTIONS = [
    dict(momentum=m, dampening=d, weight_decay=wd, nesterov=n)
    for m in (0.0, 0.9) for d in (0.0, 0.3) for wd in (0.0, 0.05) for n in (False, True)
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_matches_torch(torch, options):
    err = compare_with_torch(torch, lambda ps: SGD(ps, lr=0.1, **options),
                             lambda ps: torch.optim.SGD(ps, lr=0.1, **options))
    assert err < 1e-12


ADAM_OPTIONS = {
    "adam": ("Adam", dict(lr=1e-2)),
    "adam_betas_eps": ("Adam", dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6)),
    "adam_weight_decay": ("Adam", dict(lr=1e-2, weight_decay=0.1)),
    "adamw_default_decay": ("AdamW", dict(lr=1e-2)),
    "adamw_weight_decay": ("AdamW", dict(lr=1e-2, weight_decay=0.3)),
}


@pytest.mark.parametrize("name", list(ADAM_OPTIONS))
def test_adam_matches_torch(torch, name):
    cls, options = ADAM_OPTIONS[name]
    ours = {"Adam": Adam, "AdamW": AdamW}[cls]
    err = compare_with_torch(torch, lambda ps: ours(ps, **options),
                             lambda ps: getattr(torch.optim, cls)(ps, **options))
    assert err < 1e-12


@pytest.mark.parametrize("cls", ["SGD", "AdamW"])
def test_param_groups_match_torch(torch, cls):
    ours = {"SGD": lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
            "AdamW": lambda ps: AdamW(ps, lr=0.01)}[cls]
    theirs = {"SGD": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
              "AdamW": lambda ps: torch.optim.AdamW(ps, lr=0.01)}[cls]
    err = compare_with_torch(torch, ours, theirs, groups=((0, 2), (1,)),
                             group_options=({"lr": 0.003}, {"weight_decay": 0.2}))
    assert err < 1e-12


def torch_lrs(torch, make, steps, lrs):
    params = [torch.zeros(1, requires_grad=True) for _ in lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])
    sched = make(opt)
    out = [sched.get_last_lr()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's internal step(0) is deprecated
        for _ in range(steps):
            opt.step()
            sched.step()
            out.append(sched.get_last_lr())
    return out


def our_lrs(make, steps, lrs):
    params = [scalar_param() for _ in lrs]
    opt = SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])
    sched = make(opt)
    out = [sched.get_last_lr()]
    for _ in range(steps):
        sched.step()
        out.append(sched.get_last_lr())
    return out


def schedule_pairs(torch):
    S = torch.optim.lr_scheduler
    return {
        "step": (lambda o: StepLR(o, step_size=7, gamma=0.5), lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
        "multistep": (lambda o: MultiStepLR(o, [5, 12, 20], gamma=0.3),
                      lambda o: S.MultiStepLR(o, [5, 12, 20], gamma=0.3)),
        "cosine": (lambda o: CosineAnnealingLR(o, T_max=10, eta_min=0.01),
                   lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01)),
        "warmup": (lambda o: LinearWarmup(o, 6, start_factor=0.25),
                   lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=6)),
        "warmup_cosine": (
            lambda o: LinearWarmup(o, 5, start_factor=0.1, after=CosineAnnealingLR(o, T_max=20, eta_min=1e-3)),
            lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
                                         S.CosineAnnealingLR(o, T_max=20, eta_min=1e-3)], milestones=[5])),
    }


@pytest.mark.parametrize("kind", ["step", "multistep", "cosine", "warmup", "warmup_cosine"])
def test_schedules_match_torch(torch, kind):
    ours, theirs = schedule_pairs(torch)[kind]
    lrs = [0.1, 0.02]
    mine, torch_seq = our_lrs(ours, 30, lrs), torch_lrs(torch, theirs, 30, lrs)
    assert len(mine) == len(torch_seq) == 31
    for a, b in zip(mine, torch_seq):
        assert rel_error(np.array(a), np.array(b)) < 1e-12, (mine, torch_seq)
