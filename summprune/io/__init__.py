"""Model files: the compact codec (``compact``), save_pretrained directories and their checks
(``hf``), the course's submission format (``course``) and the atomic filesystem helpers every
writer uses (``files``). ``summprune.export`` is the public API over them."""
