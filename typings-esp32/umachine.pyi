# This umodule is a MicroPython reference to machine
from machine import *
