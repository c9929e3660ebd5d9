"""Without TensorFlow, ragmodels imports and the TF classes say how to install it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["tensorflow"] = None  # as if TensorFlow were not installed
import ragmodels
try:
    ragmodels.TFRagTokenForGeneration
except ImportError as err:
    print(err)
"""


def test_tf_class_without_tensorflow_raises_install_hint():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    assert 'pip install "ragmodels[tf]"' in out
