# This umodule is a MicroPython reference to heapq
from heapq import *
