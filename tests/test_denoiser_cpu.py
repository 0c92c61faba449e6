"""The denoiser's CPU bf16 path: the same function as the trained one, without its slow detours."""

import torch

from engine.model.denoiser import PacketDenoiser, _gelu_form


def _model() -> PacketDenoiser:
    torch.manual_seed(0)
    m = PacketDenoiser(num_classes=3, max_packets=16, d_model=32, layers=2, heads=2,
                       presence_input=True, self_condition=True).eval()
    with torch.no_grad():           # the zero-initialised heads would hide the output path
        for p in m.parameters():
            p.normal_(0.0, 0.1)
    return m


def _inputs(b: int = 3, n: int = 16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, n, 1105, generator=g)
    return x, torch.tensor(400), torch.tensor([0, 1, 2][:b]), torch.ones(b, n, dtype=torch.bool), x.clamp(-1, 1)


def test_gelu_form_is_erf_only_for_bf16_on_a_cpu():
    assert _gelu_form(torch.zeros(2, dtype=torch.bfloat16)) == "none"
    assert _gelu_form(torch.zeros(2)) == "tanh"              # training and fp32 sampling: as trained


def test_output_skip_adds_in_fp32_with_the_values_of_torch_addcmul():
    m, got = _model(), {}
    m.out.register_forward_hook(lambda mod, i, o: got.__setitem__("out", o.clone()))
    m.skip.register_forward_hook(lambda mod, i, o: got.__setitem__("skip", o.clone()))
    x, t, lab, rows, x0 = _inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x, t, lab, rows, x0)
    assert got["out"].dtype == torch.bfloat16 and y.dtype == torch.float32
    # what the model computed before the in-place form: torch.addcmul promoting the bf16 operands
    assert torch.equal(y, torch.addcmul(got["out"], got["skip"][:, None, :], x))


def test_bf16_forward_with_erf_gelu_stays_within_bf16_noise_of_the_tanh_form(monkeypatch):
    m = _model()
    x, t, lab, rows, x0 = _inputs()
    with torch.no_grad():
        ref = m(x, t, lab, rows, x0)                          # fp32, tanh: the trained function
        with torch.autocast("cpu", dtype=torch.bfloat16):
            erf = m(x, t, lab, rows, x0)
        monkeypatch.setattr("engine.model.denoiser._gelu_form", lambda h: "tanh")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tanh = m(x, t, lab, rows, x0)
    assert not torch.equal(erf, tanh)                         # the erf form really ran
    scale = ref.abs().mean()
    # the GELU forms differ by < 5e-4; bf16 itself moves the output far more than that
    assert (erf - tanh).abs().mean() < 0.25 * (tanh - ref).abs().mean() + 1e-6
    assert (erf - ref).abs().mean() < 0.05 * scale
