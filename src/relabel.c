/* placeholder: filled in by the relabel work */
