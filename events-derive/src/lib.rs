//! `#[derive(Event)]`: the `.avsc` is the one source of truth for an event.
//!
//! The derive reads the schema file when the crate compiles, takes the
//! record's full name (and so its subject and CloudEvents type) from it, and
//! refuses to compile a struct whose fields do not match the record's: the
//! same names in the same order, each Rust type fit for its Avro type. The
//! schema text is compiled in with `include_str!`, so editing the file
//! rebuilds the crate and re-runs the check.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use serde_json::Value;
use std::path::PathBuf;
use syn::{Data, DeriveInput, Fields, GenericArgument, LitStr, PathArguments, Type};

/// Implements `kafkit_events::Event` from an Avro schema file.
///
/// `#[event(schema = "schemas/x.avsc")]` names the file, relative to the
/// crate's `Cargo.toml`; `ce_type = "..."` overrides the CloudEvents type
/// (default: the record's full name). Nested records and enums are checked
/// by name here; derive [`Record`](macro@Record) on a nested record's type
/// to check its fields too.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Checks a nested record's type against its definition in a schema file.
///
/// `#[record(schema = "schemas/x.avsc", name = "Line")]`: the record named
/// `name` (its simple or full name) anywhere inside the file; the same
/// checks as `#[derive(Event)]`, and the file is compiled in so editing it
/// checks again. Implements nothing.
#[proc_macro_derive(Record, attributes(record))]
pub fn derive_record(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    match expand_record(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_record(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let [schema, name] = string_options(input, "record", ["schema", "name"])?;
    let (Some(schema), Some(name)) = (schema, name) else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[derive(Record)] needs #[record(schema = \"path/to/file.avsc\", name = \"RecordName\")]",
        ));
    };
    let (file, path, root) = read_schema(&schema)?;
    let wanted = name.value();
    let mut records = Vec::new();
    named_records(&root, "", &mut records);
    let found: Vec<&(String, Value)> = records
        .iter()
        .filter(|(full, _)| *full == wanted || full.rsplit('.').next() == Some(wanted.as_str()))
        .collect();
    let (full, record) = match found.as_slice() {
        [one] => *one,
        [] => {
            let known: Vec<&str> = records.iter().map(|(full, _)| full.as_str()).collect();
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "{file} has no record `{wanted}`; it has {}",
                    known.join(", ")
                ),
            ));
        }
        _ => {
            return Err(syn::Error::new(
                name.span(),
                format!("{file} has several records named `{wanted}`: give the full name"),
            ));
        }
    };
    check_fields(input, record, &format!("{file} ({full})"))?;
    let path = path.to_string_lossy().into_owned();
    Ok(quote! {
        const _: &str = ::core::include_str!(#path);
    })
}

/// Every record defined in `schema`, with its full name (a name without a
/// dot takes the namespace it is defined in).
fn named_records(schema: &Value, namespace: &str, out: &mut Vec<(String, Value)>) {
    match schema {
        Value::Array(branches) => {
            for branch in branches {
                named_records(branch, namespace, out);
            }
        }
        Value::Object(object) => {
            let kind = object.get("type").cloned().unwrap_or(Value::Null);
            match kind.as_str() {
                Some("record") => {
                    let name = object.get("name").and_then(Value::as_str).unwrap_or("");
                    let namespace = if name.contains('.') {
                        name.rsplit_once('.').map_or("", |(ns, _)| ns).to_owned()
                    } else {
                        object
                            .get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or(namespace)
                            .to_owned()
                    };
                    let full = if name.contains('.') || namespace.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{namespace}.{name}")
                    };
                    out.push((full, schema.clone()));
                    for field in object
                        .get("fields")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(inner) = field.get("type") {
                            named_records(inner, &namespace, out);
                        }
                    }
                }
                Some("array") => {
                    if let Some(items) = object.get("items") {
                        named_records(items, namespace, out);
                    }
                }
                Some("map") => {
                    if let Some(values) = object.get("values") {
                        named_records(values, namespace, out);
                    }
                }
                Some(_) => {}
                None => named_records(&kind, namespace, out),
            }
        }
        _ => {}
    }
}

/// The schema file a `schema = "..."` names (relative to the crate's
/// `Cargo.toml`): its name as written, its path, its JSON.
fn read_schema(schema: &LitStr) -> syn::Result<(String, PathBuf, Value)> {
    let file = schema.value();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let path = PathBuf::from(dir).join(&file);
    let error = |message: String| syn::Error::new(schema.span(), message);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| error(format!("{file} is not JSON: {e}")))?;
    Ok((file, path, value))
}

struct Options {
    schema: LitStr,
    ce_type: Option<LitStr>,
}

/// The `key = "..."` values of `#[attribute(...)]`, in the order of `keys`;
/// any other key is an error naming the ones allowed.
fn string_options<const N: usize>(
    input: &DeriveInput,
    attribute: &str,
    keys: [&str; N],
) -> syn::Result<[Option<LitStr>; N]> {
    let mut values: [Option<LitStr>; N] = std::array::from_fn(|_| None);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident(attribute)) {
        attr.parse_nested_meta(
            |meta| match keys.iter().position(|key| meta.path.is_ident(key)) {
                Some(index) => {
                    values[index] = Some(meta.value()?.parse::<LitStr>()?);
                    Ok(())
                }
                None => {
                    let allowed: Vec<String> = keys
                        .iter()
                        .map(|key| format!("`{key} = \"...\"`"))
                        .collect();
                    Err(meta.error(format!("expected {}", allowed.join(" or "))))
                }
            },
        )?;
    }
    Ok(values)
}

fn options(input: &DeriveInput) -> syn::Result<Options> {
    let [schema, ce_type] = string_options(input, "event", ["schema", "ce_type"])?;
    let schema = schema.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "#[derive(Event)] needs #[event(schema = \"path/to/file.avsc\")]",
        )
    })?;
    Ok(Options { schema, ce_type })
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let options = options(input)?;
    let (file, path, schema) = read_schema(&options.schema)?;
    let error = |message: String| syn::Error::new(options.schema.span(), message);
    if schema.get("type").and_then(Value::as_str) != Some("record") {
        return Err(error(format!("{file}: an event schema is a record")));
    }
    let name = schema
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| error(format!("{file}: the record has no name")))?;
    let full_name = match schema.get("namespace").and_then(Value::as_str) {
        Some(namespace) if !name.contains('.') && !namespace.is_empty() => {
            format!("{namespace}.{name}")
        }
        _ => name.to_owned(),
    };
    check_fields(input, &schema, &file)?;

    let ident = &input.ident;
    let path = path.to_string_lossy().into_owned();
    let ce_type = options
        .ce_type
        .map(|t| t.value())
        .unwrap_or_else(|| full_name.clone());
    Ok(quote! {
        impl ::kafkit_events::Event for #ident {
            const SCHEMA_JSON: &'static str = ::core::include_str!(#path);
            const FULL_NAME: &'static str = #full_name;
            const CE_TYPE: &'static str = #ce_type;
            fn schema() -> &'static ::kafkit_events::__private::Schema {
                static SCHEMA: ::std::sync::OnceLock<::kafkit_events::__private::Schema> =
                    ::std::sync::OnceLock::new();
                SCHEMA.get_or_init(|| ::kafkit_events::__private::parse_schema(
                    <Self as ::kafkit_events::Event>::SCHEMA_JSON,
                    #file,
                ))
            }
        }
    })
}

/// The struct's fields against the record's: names, order, types.
fn check_fields(input: &DeriveInput, schema: &Value, file: &str) -> syn::Result<()> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Event)] is for structs (an Avro record)",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Event)] needs named fields, one per field of the record",
        ));
    };
    let record_fields = schema
        .get("fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rust: Vec<_> = fields.named.iter().collect();
    for (index, avro) in record_fields.iter().enumerate() {
        let avro_name = avro.get("name").and_then(Value::as_str).unwrap_or("?");
        let Some(field) = rust.get(index) else {
            return Err(syn::Error::new_spanned(
                &input.ident,
                format!(
                    "{file} has field `{avro_name}` (number {}), the struct does not",
                    index + 1
                ),
            ));
        };
        let rust_name = field
            .ident
            .as_ref()
            .map(|i| i.to_string().trim_start_matches("r#").to_owned())
            .unwrap_or_default();
        if rust_name != avro_name {
            return Err(syn::Error::new_spanned(
                field,
                format!(
                    "field number {} is `{avro_name}` in {file}, not `{rust_name}` (same names, same order)",
                    index + 1
                ),
            ));
        }
        let avro_type = avro.get("type").cloned().unwrap_or(Value::Null);
        if let Err(why) = fits(&field.ty, &avro_type) {
            return Err(syn::Error::new_spanned(
                &field.ty,
                format!("field `{avro_name}` of {file}: {why}"),
            ));
        }
    }
    if let Some(extra) = rust.get(record_fields.len()) {
        return Err(syn::Error::new_spanned(
            extra,
            format!(
                "{file} has {} fields; this one is not among them",
                record_fields.len()
            ),
        ));
    }
    Ok(())
}

/// The last path segment of a Rust type and its generic type arguments.
fn segment(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let args = match &last.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((last.ident.to_string(), args))
}

/// Whether a Rust type can carry an Avro type, and if not why not.
fn fits(ty: &Type, avro: &Value) -> Result<(), String> {
    let rust = segment(ty);
    let (name, args) = rust
        .as_ref()
        .map(|(n, a)| (n.as_str(), a.as_slice()))
        .unwrap_or(("", &[]));
    let mismatch = |wanted: &str| Err(format!("Avro {} needs {wanted}", short(avro)));
    match avro {
        Value::String(primitive) => match primitive.as_str() {
            "string" if name == "String" => Ok(()),
            "string" => mismatch("String"),
            "long" if name == "i64" => Ok(()),
            "long" => mismatch("i64"),
            "int" if name == "i32" => Ok(()),
            "int" => mismatch("i32"),
            "boolean" if name == "bool" => Ok(()),
            "boolean" => mismatch("bool"),
            "float" if name == "f32" => Ok(()),
            "float" => mismatch("f32"),
            "double" if name == "f64" => Ok(()),
            "double" => mismatch("f64"),
            "bytes" if name == "Vec" || name == "ByteBuf" || name == "Bytes" => Ok(()),
            "bytes" => mismatch("Vec<u8> (with serde_bytes) or a byte buffer"),
            "null" if name.is_empty() || name == "()" => Ok(()),
            "null" => mismatch("()"),
            reference => {
                let simple = reference.rsplit('.').next().unwrap_or(reference);
                if name == simple {
                    Ok(())
                } else {
                    mismatch(&format!("a type named `{simple}`"))
                }
            }
        },
        Value::Array(branches) => {
            let non_null: Vec<&Value> = branches.iter().filter(|b| *b != "null").collect();
            match (branches.len() - non_null.len(), non_null.as_slice()) {
                (1, [only]) if name == "Option" && args.len() == 1 => {
                    args.first().map_or(Ok(()), |inner| fits(inner, only))
                }
                (1, [_]) => mismatch("Option<_>"),
                _ if name.is_empty() => mismatch("an enum"),
                // Unions of several types are an enum the derive does not check.
                _ => Ok(()),
            }
        }
        Value::Object(complex) => {
            let kind = complex.get("type").cloned().unwrap_or(Value::Null);
            match kind.as_str() {
                Some("array") if name == "Vec" => match (args.first(), complex.get("items")) {
                    (Some(inner), Some(items)) => fits(inner, items),
                    _ => Ok(()),
                },
                Some("array") => mismatch("Vec<_>"),
                Some("map") if name == "HashMap" || name == "BTreeMap" => {
                    match (args.get(1), complex.get("values")) {
                        (Some(inner), Some(values)) => fits(inner, values),
                        _ => Ok(()),
                    }
                }
                Some("map") => mismatch("HashMap<String, _> or BTreeMap<String, _>"),
                Some("record" | "enum" | "fixed") => {
                    let full = complex.get("name").and_then(Value::as_str).unwrap_or("");
                    let simple = full.rsplit('.').next().unwrap_or(full);
                    if name == simple || (kind == "fixed" && (name == "Vec" || name == "array")) {
                        Ok(())
                    } else {
                        mismatch(&format!("a type named `{simple}`"))
                    }
                }
                // A primitive with a logical type: {"type": "long", "logicalType": ...}.
                Some(_) => fits(ty, &kind),
                None => fits(ty, &kind),
            }
        }
        _ => Err(format!("the schema's type {} is not Avro", short(avro))),
    }
}

/// A schema fragment short enough for an error message.
fn short(avro: &Value) -> String {
    let text = avro.to_string();
    if text.len() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Expands `item` against a schema written to a file of its own.
    fn derive(schema: &str, item: &str) -> Result<String, String> {
        let file = schema_file(schema);
        let item = item.replace("FILE", &file.to_string_lossy());
        let input: DeriveInput = syn::parse_str(&item).unwrap();
        expand(&input)
            .map(|tokens| tokens.to_string())
            .map_err(|e| e.to_string())
    }

    /// `schema` in a file of its own (tests run in parallel).
    fn schema_file(schema: &str) -> std::path::PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("kafkit-derive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("schema-{n}.avsc"));
        std::fs::write(&file, schema).unwrap();
        file
    }

    const PAYMENT: &str = r#"{"type": "record", "name": "PaymentRequested", "namespace": "io.example.payments",
        "fields": [
            {"name": "payment_id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "amount_cents", "type": "long"},
            {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line",
                "fields": [{"name": "sku", "type": "string"}]}}},
            {"name": "memo", "type": ["null", "string"], "default": null},
            {"name": "tags", "type": {"type": "map", "values": "int"}}
        ]}"#;

    #[test]
    fn a_matching_struct_gets_the_names_from_the_schema() {
        let out = derive(
            PAYMENT,
            r#"#[event(schema = "FILE")] struct PaymentRequested {
                payment_id: String, amount_cents: i64, lines: Vec<Line>,
                memo: Option<String>, tags: std::collections::HashMap<String, i32> }"#,
        )
        .unwrap();
        assert!(
            out.contains("\"io.example.payments.PaymentRequested\""),
            "{out}"
        );
        assert!(out.contains("include_str"), "{out}");
    }

    #[test]
    fn the_cloudevents_type_can_be_chosen() {
        let out = derive(
            PAYMENT,
            r#"#[event(schema = "FILE", ce_type = "com.example.payment.requested.v1")]
            struct P { payment_id: String, amount_cents: i64, lines: Vec<Line>,
                memo: Option<String>, tags: BTreeMap<String, i32> }"#,
        )
        .unwrap();
        assert!(
            out.contains("\"com.example.payment.requested.v1\""),
            "{out}"
        );
    }

    #[test]
    fn fields_out_of_order_wrong_or_missing_do_not_compile() {
        let cases = [
            (
                "struct P { amount_cents: i64, payment_id: String, lines: Vec<Line>, memo: Option<String>, tags: HashMap<String, i32> }",
                "field number 1 is `payment_id`",
            ),
            (
                "struct P { payment_id: String, amount_cents: i32, lines: Vec<Line>, memo: Option<String>, tags: HashMap<String, i32> }",
                "field `amount_cents` of",
            ),
            (
                "struct P { payment_id: String, amount_cents: i64, lines: Vec<Item>, memo: Option<String>, tags: HashMap<String, i32> }",
                "a type named `Line`",
            ),
            (
                "struct P { payment_id: String, amount_cents: i64, lines: Vec<Line>, memo: String, tags: HashMap<String, i32> }",
                "needs Option<_>",
            ),
            (
                "struct P { payment_id: String, amount_cents: i64, lines: Vec<Line>, memo: Option<String> }",
                "has field `tags` (number 5)",
            ),
            (
                "struct P { payment_id: String, amount_cents: i64, lines: Vec<Line>, memo: Option<String>, tags: HashMap<String, i32>, extra: bool }",
                "has 5 fields",
            ),
            (
                "struct P { payment_id: String, amount_cents: i64, lines: Vec<Line>, memo: Option<String>, tags: HashMap<String, i64> }",
                "Avro \"int\" needs i32",
            ),
        ];
        for (item, expected) in cases {
            let error =
                derive(PAYMENT, &format!("#[event(schema = \"FILE\")] {item}")).unwrap_err();
            assert!(error.contains(expected), "{item}: {error}");
        }
    }

    #[test]
    fn a_nested_record_is_checked_against_its_definition() {
        let record = |item: &str| -> Result<String, String> {
            let file = schema_file(PAYMENT);
            let item = item.replace("FILE", &file.to_string_lossy());
            let input: DeriveInput = syn::parse_str(&item).unwrap();
            expand_record(&input)
                .map(|tokens| tokens.to_string())
                .map_err(|e| e.to_string())
        };
        for name in ["Line", "io.example.payments.Line"] {
            let out = record(&format!(
                "#[record(schema = \"FILE\", name = \"{name}\")] struct Line {{ sku: String }}"
            ))
            .unwrap();
            assert!(out.contains("include_str"), "{out}");
        }
        let error =
            record("#[record(schema = \"FILE\", name = \"Line\")] struct Line { sku: i64 }")
                .unwrap_err();
        assert!(
            error.contains("(io.example.payments.Line): Avro \"string\" needs String"),
            "{error}"
        );
        let error =
            record("#[record(schema = \"FILE\", name = \"Item\")] struct Item { sku: String }")
                .unwrap_err();
        assert!(error.contains("has no record `Item`; it has io.example.payments.PaymentRequested, io.example.payments.Line"), "{error}");
    }

    #[test]
    fn a_missing_attribute_file_or_non_record_is_an_error_that_says_so() {
        let input: DeriveInput = syn::parse_str("struct P { a: i64 }").unwrap();
        let error = expand(&input).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("needs #[event(schema"), "{error}");
        let input: DeriveInput =
            syn::parse_str("#[event(schema = \"/nonexistent/x.avsc\")] struct P { a: i64 }")
                .unwrap();
        let error = expand(&input).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("cannot read /nonexistent/x.avsc"), "{error}");
        let error = derive(
            "\"string\"",
            "#[event(schema = \"FILE\")] struct P { a: i64 }",
        )
        .unwrap_err();
        assert!(error.contains("an event schema is a record"), "{error}");
    }
}
