//! GRETA IR and HIP C++ code generation.
