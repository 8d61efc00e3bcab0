# This umodule is a MicroPython reference to struct
from struct import *
