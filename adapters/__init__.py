"""Student Adapter, auxiliary distillation heads, projection and parameter-sharing helpers.

Empty for now: the transfer techniques are their own issue (#3).
"""
