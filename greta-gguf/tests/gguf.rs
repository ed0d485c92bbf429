//! GGUF reader and writer: round trips, alignment, and every validation error.

use greta_gguf::quant::GgmlType;
use greta_gguf::raw::Raw;
use greta_gguf::{Array, Gguf, GgufError, GgufWriteError, GgufWriter, Value};

/// Parses bytes that must be rejected, returning the message.
fn reject(bytes: &[u8]) -> (GgufError, String) {
    match Gguf::from_bytes("bad.gguf", bytes) {
        Ok(_) => panic!("bad.gguf was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("bad.gguf: "), "{msg}");
            (e, msg)
        }
    }
}

/// Asserts that `msg` contains every one of `parts`.
fn assert_names(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "{msg:?} does not mention {part:?}");
    }
}

fn every_metadata_type() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(1.5e-5)),
        ("t.bool", Value::Bool(true)),
        ("t.string", Value::from("héllo ▁ wörld")),
        ("t.empty_string", Value::from("")),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(-2.5e300)),
        ("t.arr_u8", Value::from(vec![1u8, 2, 255])),
        ("t.arr_i8", Value::from(vec![-1i8, 0, 127])),
        ("t.arr_u16", Value::from(vec![1u16, 65535])),
        ("t.arr_i16", Value::from(vec![-32768i16, 5])),
        ("t.arr_u32", Value::from(vec![7u32, 8])),
        ("t.arr_i32", Value::from(vec![-7i32, 1, 3])),
        ("t.arr_f32", Value::from(vec![0.25f32, -1.0])),
        ("t.arr_bool", Value::from(vec![true, false, true])),
        ("t.arr_string", Value::from(vec!["a", "", "<0x0A>"])),
        ("t.arr_u64", Value::from(vec![u64::MAX, 0])),
        ("t.arr_i64", Value::from(vec![i64::MIN, -1])),
        ("t.arr_f64", Value::from(vec![1e-300f64])),
        ("t.arr_empty", Value::from(Vec::<f32>::new())),
        (
            "t.arr_nested",
            Value::from(Array::Array(vec![
                Array::U32(vec![1, 2]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::Bool(vec![false])]),
                Array::I64(vec![]),
            ])),
        ),
    ]
}

fn write_to_vec(build: impl FnOnce(&mut GgufWriter<Vec<u8>>)) -> Vec<u8> {
    let mut w = GgufWriter::with_writer("mem.gguf", Vec::new());
    build(&mut w);
    w.finish().unwrap()
}

#[test]
fn every_metadata_type_round_trips() {
    let values = every_metadata_type();
    let bytes = write_to_vec(|w| {
        for (k, v) in &values {
            w.add(k, v.clone()).unwrap();
        }
    });
    let g = Gguf::from_bytes("mem.gguf", bytes).unwrap();
    assert_eq!(g.version(), 3);
    let read: Vec<(&str, &Value)> = g.metadata().collect();
    assert_eq!(read.len(), values.len());
    for ((k, v), (rk, rv)) in values.iter().zip(read) {
        assert_eq!(*k, rk);
        assert_eq!(v, rv, "{k}");
    }
    assert_eq!(g.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(g.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(g.get_f32("t.f32").unwrap(), 1.5e-5);
    assert!(g.get_bool("t.bool").unwrap());
    assert_eq!(g.get_str("t.string").unwrap(), "héllo ▁ wörld");
    assert_eq!(g.get::<&[i32]>("t.arr_i32").unwrap(), &[-7, 1, 3]);
    assert_eq!(g.get::<&[String]>("t.arr_string").unwrap()[2], "<0x0A>");
    assert_eq!(g.get_array("t.arr_nested").unwrap().len(), 4);
}

#[test]
fn tensors_round_trip_through_a_file_with_aligned_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let norm: Vec<u8> = (0..7u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let q8: Vec<u8> = (0..2 * 34).map(|i| i as u8).collect();
    let mut w = GgufWriter::new(&path).unwrap();
    w.add("general.architecture", "llama").unwrap();
    w.add_tensor("norm", GgmlType::F32, &[7]).unwrap();
    w.add_tensor("empty", GgmlType::F16, &[0, 3]).unwrap();
    w.add_tensor("q8", GgmlType::Q8_0, &[32, 2]).unwrap();
    // Chunks that end mid-tensor and run across tensor boundaries.
    let all: Vec<u8> = norm.iter().chain(&q8).copied().collect();
    w.write_tensor_data(&all[..5]).unwrap();
    w.write_tensor_data(&all[5..40]).unwrap();
    w.write_tensor_data(&all[40..]).unwrap();
    w.finish().unwrap();

    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.data_offset() % 32, 0);
    let names: Vec<&str> = g.tensors().map(|t| t.name).collect();
    assert_eq!(names, ["norm", "empty", "q8"]);
    let t = g.tensor("norm").unwrap();
    assert_eq!(
        (t.ggml_type, t.dims, t.bytes),
        (GgmlType::F32, &[7][..], &norm[..])
    );
    assert!(g.tensor("empty").unwrap().bytes.is_empty());
    let t = g.tensor("q8").unwrap();
    assert_eq!(
        (t.ggml_type, t.dims, t.bytes),
        (GgmlType::Q8_0, &[32, 2][..], &q8[..])
    );
    for info in g.tensor_infos() {
        assert_eq!(info.offset % 32, 0, "{}", info.name);
    }
    assert_eq!(g.tensor_info("q8").unwrap().n_elements(), 64);
    assert_eq!(g.tensor_info("norm").unwrap().offset, 0);
    assert_eq!(g.tensor_info("q8").unwrap().offset, 32);
}

#[test]
fn custom_alignment_is_written_and_honoured() {
    let bytes = write_to_vec(|w| {
        w.add("general.alignment", 256u32).unwrap();
        w.add_tensor("a", GgmlType::F32, &[3]).unwrap();
        w.add_tensor("b", GgmlType::F32, &[1]).unwrap();
        w.write_tensor_data(&[1u8; 16]).unwrap();
    });
    let g = Gguf::from_bytes("mem.gguf", bytes).unwrap();
    assert_eq!(g.alignment(), 256);
    assert_eq!(g.data_offset() % 256, 0);
    assert_eq!(g.tensor_info("b").unwrap().offset, 256);
    assert_eq!(g.tensor("b").unwrap().bytes, &[1u8; 4]);
}

#[test]
fn hand_built_v2_file_with_default_alignment_parses() {
    let bytes = Raw::header(2, 1, 1)
        .kv_u32("x", 5)
        .tensor("w", &[4], 0, 0)
        .pad(32)
        .zeros(16)
        .0;
    let g = Gguf::from_bytes("v2.gguf", bytes).unwrap();
    assert_eq!(g.version(), 2);
    assert_eq!(g.tensor("w").unwrap().bytes.len(), 16);
}

#[test]
fn integer_accessors_accept_any_integer_that_fits() {
    let bytes = write_to_vec(|w| {
        w.add("small", Value::I32(12)).unwrap();
        w.add("negative", Value::I32(-1)).unwrap();
        w.add("huge", Value::U64(1 << 40)).unwrap();
        w.add("name", "x").unwrap();
    });
    let g = Gguf::from_bytes("m.gguf", bytes).unwrap();
    assert_eq!(g.get_u32("small").unwrap(), 12);
    assert_eq!(g.get::<i64>("huge").unwrap(), 1 << 40);
    let msg = g.get_u32("negative").unwrap_err().to_string();
    assert_eq!(msg, "m.gguf: key 'negative' is i32 (-1), expected u32");
    let msg = g.get_u32("huge").unwrap_err().to_string();
    assert_eq!(
        msg,
        "m.gguf: key 'huge' is u64 (1099511627776), expected u32"
    );
    let msg = g.get_u32("name").unwrap_err().to_string();
    assert_eq!(msg, "m.gguf: key 'name' is string (1 bytes), expected u32");
    let msg = g.get_f32("small").unwrap_err().to_string();
    assert_eq!(msg, "m.gguf: key 'small' is i32 (12), expected f32");
    let msg = g.get_u32("llama.block_count").unwrap_err().to_string();
    assert_eq!(msg, "m.gguf: missing key 'llama.block_count'");
    assert_eq!(g.get_opt::<u32>("llama.block_count").unwrap(), None);
    assert!(g.get_opt::<bool>("name").is_err());
    let msg = g.tensor("output.weight").unwrap_err().to_string();
    assert_eq!(msg, "m.gguf: missing tensor 'output.weight'");
}

#[test]
fn missing_file_names_the_path() {
    let err = Gguf::open("/nonexistent/dir/model.gguf").err().unwrap();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().starts_with("/nonexistent/dir/model.gguf: "));
}

#[test]
fn empty_and_short_files_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    std::fs::write(&path, b"").unwrap();
    let msg = Gguf::open(&path).err().unwrap().to_string();
    assert_names(&msg, &["empty.gguf", "magic at offset 0 needs 4 bytes"]);
    let (_, msg) = reject(&Raw::header(3, 0, 0).0[..12]);
    assert_names(
        &msg,
        &["tensor count at offset 8 needs 8 bytes", "ends at 12"],
    );
}

#[test]
fn bad_magic() {
    let (e, msg) = reject(b"GGML\x03\0\0\0");
    assert!(matches!(e, GgufError::BadMagic { .. }));
    assert_names(&msg, &["not a GGUF file", "offset 0"]);
}

#[test]
fn version_one_is_refused_with_a_clear_message() {
    let (e, msg) = reject(&Raw::header(1, 0, 0).0);
    assert!(matches!(e, GgufError::VersionOne { .. }));
    assert_names(&msg, &["version 1 is not supported", "2 and 3"]);
}

#[test]
fn unknown_and_big_endian_versions() {
    let (_, msg) = reject(&Raw::header(7, 0, 0).0);
    assert_names(&msg, &["unsupported GGUF version 7 at offset 4"]);
    let (_, msg) = reject(&Raw::header(3u32.swap_bytes(), 0, 0).0);
    assert_names(&msg, &["big-endian"]);
}

#[test]
fn absurd_counts_fail_before_allocating() {
    let (e, msg) = reject(&Raw::header(3, 0, 1 << 60).0);
    assert!(matches!(e, GgufError::CountTooLarge { .. }));
    assert_names(&msg, &["metadata count 1152921504606846976 at offset 16"]);

    let (_, msg) = reject(&Raw::header(3, u64::MAX, 0).0);
    assert_names(&msg, &["tensor count 18446744073709551615 at offset 8"]);

    // An array of 2^60 strings in a tiny file.
    let bytes = Raw::header(3, 0, 1)
        .str("tokenizer.ggml.tokens")
        .u32(9)
        .u32(8)
        .u64(1 << 60)
        .zeros(64)
        .0;
    let (_, msg) = reject(&bytes);
    assert_names(
        &msg,
        &[
            "key 'tokenizer.ggml.tokens' value 1152921504606846976 at offset 61",
            "64 bytes left",
            "at least 8",
        ],
    );
}

#[test]
fn string_longer_than_the_file() {
    let bytes = Raw::header(3, 0, 1)
        .str("general.name")
        .u32(8)
        .u64(1000)
        .bytes(b"abc")
        .0;
    let (e, msg) = reject(&bytes);
    assert!(matches!(e, GgufError::Truncated { .. }));
    assert_names(
        &msg,
        &[
            "key 'general.name' value at offset 56 needs 1000 bytes",
            "ends at 59",
        ],
    );
}

#[test]
fn key_name_truncated_names_the_key_index() {
    let bytes = Raw::header(3, 0, 2).kv_u32("a", 1).u64(50).bytes(b"xy").0;
    let (_, msg) = reject(&bytes);
    assert_names(&msg, &["key #1 name at offset 49 needs 50 bytes"]);
}

#[test]
fn invalid_utf8() {
    let bytes = Raw::header(3, 0, 1)
        .str("k")
        .u32(8)
        .u64(2)
        .bytes(&[0xff, 0xfe])
        .0;
    let (e, msg) = reject(&bytes);
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }));
    assert_names(&msg, &["key 'k' value at offset 45 is not valid UTF-8"]);
}

#[test]
fn unknown_value_type() {
    let bytes = Raw::header(3, 0, 1).str("k").u32(13).u32(0).0;
    let (e, msg) = reject(&bytes);
    assert!(matches!(e, GgufError::UnknownValueType { type_id: 13, .. }));
    assert_names(
        &msg,
        &["key 'k' value type has unknown value type id 13 at offset 33"],
    );
}

#[test]
fn bool_other_than_zero_or_one() {
    let bytes = Raw::header(3, 0, 1).str("flag").u32(7).u8(2).0;
    let (e, msg) = reject(&bytes);
    assert!(matches!(e, GgufError::BadBool { byte: 2, .. }));
    assert_names(&msg, &["key 'flag' value at offset 40"]);
}

#[test]
fn arrays_nested_too_deep() {
    let mut raw = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..20 {
        raw = raw.u32(9).u64(1);
    }
    let (e, msg) = reject(&raw.u32(4).u64(0).0);
    assert!(matches!(e, GgufError::ArrayTooDeep { .. }));
    assert_names(&msg, &["key 'deep'", "deeper than 8"]);
}

#[test]
fn duplicate_key() {
    let bytes = Raw::header(3, 0, 2).kv_u32("a", 1).kv_u32("a", 2).0;
    let (e, msg) = reject(&bytes);
    assert!(matches!(e, GgufError::DuplicateKey { .. }));
    assert_names(&msg, &["duplicate key 'a' at offset 41"]);
}

#[test]
fn bad_alignment_values() {
    let (e, msg) = reject(&Raw::header(3, 0, 1).kv_u32("general.alignment", 48).0);
    assert!(matches!(e, GgufError::BadAlignment { value: 48, .. }));
    assert_names(&msg, &["'general.alignment' is 48"]);
    let (_, msg) = reject(&Raw::header(3, 0, 1).kv_u32("general.alignment", 0).0);
    assert_names(&msg, &["'general.alignment' is 0"]);
    let bytes = Raw::header(3, 0, 1)
        .str("general.alignment")
        .u32(8)
        .str("32")
        .0;
    let (e, msg) = reject(&bytes);
    assert!(matches!(e, GgufError::WrongType { .. }));
    assert_names(&msg, &["key 'general.alignment' is string"]);
}

/// A file with one metadata pair and the given tensor infos, padded, plus `data` bytes.
fn with_tensors(tensors: &[(&str, &[u64], u32, u64)], data: usize) -> Vec<u8> {
    let mut raw = Raw::header(3, tensors.len() as u64, 1).kv_u32("k", 0);
    for &(name, dims, ty, offset) in tensors {
        raw = raw.tensor(name, dims, ty, offset);
    }
    raw.pad(32).zeros(data).0
}

#[test]
fn too_many_dims() {
    let (e, msg) = reject(&with_tensors(&[("t5", &[1, 1, 1, 1, 1], 0, 0)], 4));
    assert!(matches!(e, GgufError::TooManyDims { n_dims: 5, .. }));
    assert_names(&msg, &["tensor 't5': 5 dimensions at offset 51"]);
}

#[test]
fn dims_product_overflow() {
    let (e, msg) = reject(&with_tensors(&[("big", &[1 << 32, 1 << 32, 2], 0, 0)], 4));
    assert!(matches!(e, GgufError::DimsOverflow { .. }));
    assert_names(&msg, &["tensor 'big'", "overflow 64 bits"]);
    // The element count fits but the byte size does not.
    let (_, msg) = reject(&with_tensors(&[("bytes", &[1 << 62], 0, 0)], 4));
    assert_names(&msg, &["tensor 'bytes'", "overflow"]);
}

#[test]
fn unknown_tensor_type() {
    let (e, msg) = reject(&with_tensors(&[("w", &[32], 4, 0)], 64));
    assert!(matches!(e, GgufError::UnknownTensorType { type_id: 4, .. }));
    assert_names(&msg, &["tensor 'w': unknown ggml type id 4 at offset 62"]);
}

#[test]
fn partial_quant_block() {
    let (e, msg) = reject(&with_tensors(&[("q", &[48, 2], 8, 0)], 1024));
    assert!(matches!(e, GgufError::PartialBlock { .. }));
    assert_names(
        &msg,
        &[
            "tensor 'q'",
            "48 is not a multiple of the Q8_0 block size 32",
        ],
    );
}

#[test]
fn duplicate_tensor() {
    let (e, msg) = reject(&with_tensors(&[("w", &[8], 0, 0), ("w", &[8], 0, 32)], 64));
    assert!(matches!(e, GgufError::DuplicateTensor { .. }));
    assert_names(&msg, &["duplicate tensor 'w' at offset 74"]);
}

#[test]
fn misaligned_tensor_offset() {
    let (e, msg) = reject(&with_tensors(&[("w", &[8], 0, 4)], 64));
    assert!(matches!(e, GgufError::Misaligned { .. }));
    assert_names(
        &msg,
        &[
            "tensor 'w': data offset",
            "not a multiple of the alignment 32",
        ],
    );
}

#[test]
fn tensor_past_end_of_file() {
    let bytes = with_tensors(&[("blk.3.attn_q.weight", &[4096, 4096], 12, 0)], 100);
    let len = bytes.len();
    let (e, msg) = reject(&bytes);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));
    assert_eq!(
        msg,
        format!(
            "bad.gguf: tensor 'blk.3.attn_q.weight': data [offset 128, 9437184 bytes] runs past end of file ({len} bytes)"
        )
    );
    // An offset so large that start + size overflows.
    let (_, msg) = reject(&with_tensors(&[("far", &[8], 0, u64::MAX - 31)], 64));
    assert_names(&msg, &["tensor 'far'", "runs past end of file"]);
}

#[test]
fn overlapping_tensors() {
    let (e, msg) = reject(&with_tensors(
        &[("a", &[16], 0, 0), ("b", &[8], 0, 32)],
        128,
    ));
    assert!(matches!(e, GgufError::TensorOverlap { .. }));
    assert_names(&msg, &["tensor 'b'", "overlaps tensor 'a'", "64 bytes"]);
}

#[test]
fn writer_refuses_inconsistent_use() {
    let mut w = GgufWriter::with_writer("w.gguf", Vec::new());
    w.add("a", 1u32).unwrap();
    let e = w.add("a", 2u32).unwrap_err();
    assert!(matches!(e, GgufWriteError::DuplicateKey { .. }));
    let e = w.add("general.alignment", 48u32).unwrap_err();
    assert_eq!(
        e.to_string(),
        "w.gguf: key 'general.alignment': is u32 (48), must be a power-of-two u32 no larger than 65536"
    );
    let mut deep = Array::U8(vec![]);
    for _ in 0..8 {
        deep = Array::Array(vec![deep]);
    }
    let e = w.add("deep", deep).unwrap_err();
    assert_eq!(
        e.to_string(),
        "w.gguf: key 'deep': arrays nest deeper than 8"
    );
    w.add_tensor("t", GgmlType::F32, &[2]).unwrap();
    let e = w.add_tensor("t", GgmlType::F32, &[2]).unwrap_err();
    assert_eq!(e.to_string(), "w.gguf: duplicate tensor 't'");
    let e = w.add_tensor("q", GgmlType::Q4K, &[100]).unwrap_err();
    assert!(e.to_string().contains("tensor 'q': first dimension"), "{e}");
    let e = w.add_tensor("five", GgmlType::F32, &[1; 5]).unwrap_err();
    assert!(e.to_string().contains("5 dimensions"), "{e}");
    w.write_tensor_data(&[0; 4]).unwrap();
    let e = w.add("late", 1u8).unwrap_err();
    assert_eq!(
        e.to_string(),
        "w.gguf: cannot add key 'late' after tensor data has started"
    );
    let e = w.write_tensor_data(&[0; 5]).unwrap_err();
    assert!(
        matches!(e, GgufWriteError::TooMuchData { extra: 1, .. }),
        "{e}"
    );
    // The four bytes that fitted completed 't', so the file is whole.
    let bytes = w.finish().unwrap();
    assert_eq!(
        Gguf::from_bytes("w.gguf", bytes)
            .unwrap()
            .tensor_infos()
            .len(),
        1
    );
}

#[test]
fn writer_reports_incomplete_tensors() {
    let mut w = GgufWriter::with_writer("w.gguf", Vec::new());
    w.add_tensor("t", GgmlType::F32, &[4]).unwrap();
    w.write_tensor_data(&[0; 10]).unwrap();
    let e = w.finish().unwrap_err();
    assert_eq!(e.to_string(), "w.gguf: tensor 't' has 10 of its 16 bytes");
}
