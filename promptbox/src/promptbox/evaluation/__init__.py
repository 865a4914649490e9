"""`promptbox eval`: a labelled folder of frames -> accuracy, failure rates and latency per mode and tag.

dataset.py reads the folder, runner.py asks a Locator, metrics.py judges the answers (pure, no torch),
report.py formats the numbers, sheet.py draws the worst cases, coco.py converts COCO instances, cli.py wires them.
"""
