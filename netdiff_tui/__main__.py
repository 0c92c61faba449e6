import multiprocessing

from netdiff_tui.cli import main

if __name__ == "__main__":
    # a frozen (PyInstaller) binary starts worker processes through itself
    multiprocessing.freeze_support()
    main()
