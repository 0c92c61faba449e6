"""The console's tabs: one view module each, over the engine and the files it writes."""
