"""The Textual face of sushitui. Only this package imports textual."""
