/* placeholder: filled in by the expo_proto work */
