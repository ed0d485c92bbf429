//! GRETA runtime: devices, compilation, launches, graphs.
