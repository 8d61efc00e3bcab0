# This umodule is a MicroPython reference to select
from select import *
