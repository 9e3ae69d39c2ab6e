"""Run the `aft` CLI with the test teachers registered and one kill point armed (env AFT_TEST_KILL).

Usage: python _driver.py <aft arguments...>. ``AFT_TEST_CKPT_S`` sets extraction's checkpoint
interval (seconds) so that a killed extraction has progress to resume from.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))

from _rel_helpers import install_kill, register_test_teachers  # noqa: E402

register_test_teachers()
if "AFT_TEST_CKPT_S" in os.environ:
    import aft.features  # noqa: F401 - the package re-exports the function under the module's name

    sys.modules["aft.features.extract"].extract.__kwdefaults__["checkpoint_every_s"] = float(os.environ["AFT_TEST_CKPT_S"])
install_kill(os.environ.get("AFT_TEST_KILL", ""))

from aft.cli.main import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
