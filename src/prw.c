/* placeholder: filled in by the prw work */
