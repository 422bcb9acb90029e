"""python -m common.assignment_check OUT: the rubric of an output folder of assignment_wildlife.py."""

import sys

from common.assignment_check import main

sys.exit(main())
