"""The bundled tiny VideoLLM: a LLaVA-NeXT-Video of miniature size, trained on the synthetic benchmark."""
