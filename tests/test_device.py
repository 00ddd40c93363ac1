"""Device and precision choices: CUDA requests refused where absent, bf16 training on CPUs that compute it."""

import pytest
import torch

from medprompt.common import device as device_module
from medprompt.common.device import autocast, cpu_bf16_for, resolve_device
from medprompt.common.errors import MedpromptError

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_precision_auto_follows_the_cpus_instructions_and_fp32_or_bf16_are_obeyed(monkeypatch, native):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert cpu_bf16_for(CPU, "auto") is native
    assert cpu_bf16_for(CPU, "fp32") is False and cpu_bf16_for(CPU, "bf16") is True
    assert cpu_bf16_for(torch.device("cuda"), "bf16") is False  # CUDA's autocast is bf16 already


def test_autocast_on_a_cpu_computes_in_bf16_only_when_asked():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast(CPU):
        assert layer(x).dtype == torch.float32
    with autocast(CPU, cpu_bf16=True):
        assert layer(x).dtype == torch.bfloat16


def test_unknown_or_absent_devices_are_named():
    assert resolve_device("cpu") == CPU
    with pytest.raises(MedpromptError, match="--device 'tpu': not a device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MedpromptError, match="CUDA is not available on this machine"):
            resolve_device("cuda")
