import os
import sys

# Make the repository root importable (models/, util/) when pytest runs from anywhere.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
