import logging
import os
import sys

from .cli import main

code = main()
# Everything the layer owns is closed by now. Skip the interpreter's teardown of moto's large
# in-memory state, which alone takes ~2 s and would break the "stopped within 2 s" promise.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
