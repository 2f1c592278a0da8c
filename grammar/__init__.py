"""The .conv grammar, installed with the package as convc.grammar."""
