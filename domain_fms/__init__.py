"""Domain foundation models (hierarchical transfer: teacher → domain FM → VM).

Empty for now: hierarchical transfer is its own issue (#3). Recipes cannot select it yet.
"""
