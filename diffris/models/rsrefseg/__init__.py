"""RSRefSeg: frozen SigLIP + SAM adapted with LoRA, a text-filter prompter and SAM's decoder."""
