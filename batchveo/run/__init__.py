"""A run: the pipeline's stages and what drives them (see ``runner``)."""
