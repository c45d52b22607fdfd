/* placeholder: filled in by the expo work */
