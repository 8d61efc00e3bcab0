# This umodule is a MicroPython reference to platform
from platform import *
