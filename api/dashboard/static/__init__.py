"""The dashboard's HTML, JavaScript and CSS; a package only so that wheels ship these files.

`setup.py` packages `*.html`, `*.js`, `*.css` and `*.svg` of every package;
this folder being one is what puts it in the wheel. No build step: the
files here are the source.
"""
