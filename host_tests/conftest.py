"""Shared pytest setup: put firmware/ and the dual-runtime test folder on sys.path."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "firmware"))
sys.path.insert(0, os.path.join(ROOT, "host_tests", "dual"))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
