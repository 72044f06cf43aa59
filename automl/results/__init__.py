"""What a finished run gives back: the result, its explanation and diagnostics, the
dashboard note, the epoch account, the stored model, and the HTML report."""
