"""What VeRL's FSDP engine runs on the actor's and the reference model's module at worker init, in the
image-lock venv (tests/trainer/test_image_lock.py calls :func:`patch_tiny_model` through
image_lock_probe.py, whose folder is on sys.path).

``verl.workers.engine.fsdp.transformer_impl`` builds the module, then calls
``verl.models.transformers.monkey_patch.apply_monkey_patch`` on it. Whenever TRL is importable
(``verl.utils.import_utils.is_trl_available``, a find_spec), that function imports
``AutoModelForCausalLMWithValueHead`` from ``trl.experimental.ppo`` or else from ``trl``: an import inside the
call, which importing the modules never reaches. TRL 1.13+ has neither, so every GRPO run of a lock holding
one failed at actor init on the GPU; here the same call runs on a tiny randomly initialised Qwen2 (the model
family of the image's base models), with the arguments the FSDP engine passes by default. (The other TRL
import, ``verl.utils.model.patch_valuehead_model``, is the same import, for a value-head critic, which GRPO
has not.)
"""

from __future__ import annotations

from typing import Any


def tiny_qwen2() -> Any:
    """A Qwen2ForCausalLM small enough to build in well under a second (nothing downloaded)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return Qwen2ForCausalLM(config)


def patch_tiny_model() -> None:
    """apply_monkey_patch as FSDPEngine's module builder calls it: remove-padding on, no sequence
    parallelism, no fused kernels (verl_engine's defaults)."""
    from verl.models.transformers.monkey_patch import apply_monkey_patch
    from verl.utils.import_utils import is_trl_available

    # the image installs TRL (the CPU engine), so VeRL takes its TRL branch: it must be taken here too
    if not is_trl_available():
        raise RuntimeError("TRL is not importable: VeRL's TRL branch would not run (the image has TRL)")
    apply_monkey_patch(
        model=tiny_qwen2(),
        use_remove_padding=True,
        ulysses_sp_size=1,
        use_fused_kernels=False,
        fused_kernels_backend=None,
    )
