"""The shipped accelerate configs (FSDP, DeepSpeed) load with accelerate's own config reader.

They cannot run here (no GPU; transformers refuses FSDP on CPU processes), so this checks what can be
checked offline: accelerate parses them into the intended distributed setup.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "accelerate"


@pytest.mark.parametrize(
    ("name", "kind", "section", "key", "value"),
    [
        ("fsdp.yaml", DistributedType.FSDP, "fsdp_config", "fsdp_state_dict_type", "FULL_STATE_DICT"),
        ("deepspeed_zero2.yaml", DistributedType.DEEPSPEED, "deepspeed_config", "zero_stage", 2),
    ],
)
def test_accelerate_config_parses(name, kind, section, key, value):
    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type == kind
    assert config.mixed_precision == "bf16"
    assert getattr(config, section)[key] == value
