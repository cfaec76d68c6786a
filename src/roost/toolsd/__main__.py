import sys

from roost.toolsd._main import main

if __name__ == "__main__":
    sys.exit(main())
