"""The desktop workbench: PySide6 + NodeGraphQt on top of the headless engine.

Everything under ``app.gui`` imports Qt; the command line imports this
package only inside its ``gui`` command.
"""
