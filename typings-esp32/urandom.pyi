# This umodule is a MicroPython reference to random
from random import *
