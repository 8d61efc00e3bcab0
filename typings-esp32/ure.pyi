# This umodule is a MicroPython reference to re
from re import *
