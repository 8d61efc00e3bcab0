# This umodule is a MicroPython reference to time
from time import *
