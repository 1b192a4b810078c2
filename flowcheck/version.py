"""flowcheck's version, in a module that imports nothing.

Low layers (the result cache, the adapter contract, the report) read it from here: importing it from the
package root would draw an import edge to the root's `flowcheck.load`, which reaches the models.
"""

__version__ = "0.1.0"
