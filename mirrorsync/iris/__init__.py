"""The IRIS terminal layer: ObjectScript built by pure functions, framed results parsed strictly."""
