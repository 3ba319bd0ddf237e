//! What the API server checks beyond the JSON Schema keywords: the CEL rules
//! (`x-kubernetes-validations`) and the uniqueness of `x-kubernetes-list-type` map/set lists.
//!
//! There is no CEL engine here: each rule text the shipped CRDs use has a hand-written
//! equivalent below. A rule that a document reaches and that has no equivalent is an error, so a
//! CRD update or a new kind cannot pass unchecked.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::manifests::schema::display_path;

/// Every CEL and list-type error in `doc` against the CRD's openAPIV3Schema.
pub fn check(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(schema, doc, "", &mut errors);
    errors
}

fn walk(schema: &Value, value: &Value, pointer: &str, errors: &mut Vec<String>) {
    let path = display_path(pointer);
    for validation in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = normalize(validation["rule"].as_str().unwrap_or(""));
        let message = validation["message"].as_str().unwrap_or("CEL rule failed");
        match evaluate(&rule, value) {
            Some(true) => {}
            Some(false) => errors.push(format!("{path}: {message} (CEL: {rule})")),
            None => errors.push(format!(
                "{path}: CEL rule `{rule}` has no hand-written check; add it to tests/suite/manifests/cel.rs"
            )),
        }
    }
    if let Some(items) = value.as_array() {
        check_list_type(schema, items, &path, errors);
        for (index, item) in items.iter().enumerate() {
            walk(
                &schema["items"],
                item,
                &format!("{pointer}/{index}"),
                errors,
            );
        }
    }
    if let Some(fields) = value.as_object() {
        for (name, field) in fields {
            let sub = match schema["properties"].get(name) {
                Some(sub) => sub,
                None => &schema["additionalProperties"],
            };
            let escaped = name.replace('~', "~0").replace('/', "~1");
            walk(sub, field, &format!("{pointer}/{escaped}"), errors);
        }
    }
}

fn check_list_type(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<String>) {
    let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
        .as_array()
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let identity = |item: &Value| -> String {
        match schema["x-kubernetes-list-type"].as_str() {
            Some("map") => keys
                .iter()
                .map(|k| item[*k].to_string())
                .collect::<Vec<_>>()
                .join(","),
            _ => item.to_string(),
        }
    };
    if !matches!(
        schema["x-kubernetes-list-type"].as_str(),
        Some("map" | "set")
    ) {
        return;
    }
    let mut seen = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        if !seen.insert(identity(item)) {
            errors.push(format!(
                "{path}[{index}]: Duplicate value {}",
                identity(item)
            ));
        }
    }
}

/// Every CEL rule text in a schema (normalized), wherever it sits.
pub fn rules_in(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(fields) => {
            for validation in fields
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(normalize(validation["rule"].as_str().unwrap_or("")));
            }
            fields.values().for_each(|v| rules_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rules_in(v, out)),
        _ => {}
    }
}

/// Whether `rule` has a hand-written equivalent here.
pub fn is_known(rule: &str) -> bool {
    evaluate(rule, &Value::Null).is_some()
}

fn normalize(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn has(value: &Value, field: &str) -> bool {
    value.get(field).is_some()
}

/// The hand-written equivalent of `rule` applied to `value` (CEL's `self`); `None` for a rule
/// this file does not know.
fn evaluate(rule: &str, value: &Value) -> Option<bool> {
    let text = value.as_str();
    let keys = || -> Vec<String> {
        match value {
            Value::Object(fields) => fields.keys().cloned().collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let result = match rule {
        "duration(self) >= duration('1ms')" => {
            text.and_then(go_duration_seconds).is_some_and(|s| s >= 0.001)
        }
        "self.size() == 0" => match value {
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        },
        "!self.contains(\"*\")" => text.is_some_and(|s| !s.contains('*')),
        "self != \"*\"" => text != Some("*"),
        "self.all(key, !key.contains(\"*\"))" => keys().iter().all(|k| !k.contains('*')),
        "self.all(key, key.size() != 0)" => keys().iter().all(|k| !k.is_empty()),
        "0 < self && self <= 65535" => value.as_i64().is_some_and(|n| 0 < n && n <= 65535),
        "has(self.wasm) != has(self.lua)" => has(value, "wasm") != has(value, "lua"),
        "(has(self.valueFrom) ? self.valueFrom : \"\") != \"HOST\" || !has(self.value)" => {
            value["valueFrom"] != "HOST" || !has(value, "value")
        }
        "has(self.context) ? ((self.context == \"WAYPOINT\") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)" => {
            if value["context"] == "WAYPOINT" {
                has(value, "waypoint")
            } else {
                !has(value, "waypoint")
            }
        }
        "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) && !has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true" => {
            !(has(value, "serviceAccounts") || has(value, "notServiceAccounts"))
                || ["principals", "notPrincipals", "namespaces", "notNamespaces"]
                    .iter()
                    .all(|f| !has(value, f))
        }
        "url(self).getScheme() in [\"http\", \"https\"]" => {
            text.and_then(url_scheme).is_some_and(|s| s == "http" || s == "https")
        }
        _ => {
            if let Some(fields) = at_most_one_of(rule) {
                return Some(fields.iter().filter(|f| has(value, f)).count() <= 1);
            }
            if let Some(allowed) = url_scheme_in(rule) {
                // isURL(self) ? scheme in allowed : isURL("http://" + self) && "http" in allowed
                return Some(match text.and_then(url_scheme) {
                    Some(scheme) => allowed.contains(&scheme),
                    None => allowed.contains(&"http".to_string()),
                });
            }
            return None;
        }
    };
    Some(result)
}

/// `(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) ... <= 1` -> [a, b, ...].
fn at_most_one_of(rule: &str) -> Option<Vec<String>> {
    let terms = rule.strip_suffix(" <= 1")?;
    terms
        .split(" + ")
        .map(|term| {
            term.strip_prefix("(has(self.")?
                .strip_suffix(") ? 1 : 0)")
                .map(str::to_string)
        })
        .collect()
}

/// Istio's url rule: `isURL(self) ? (url(self).getScheme() in [...]) : (isURL("http://" + self)
/// && url("http://" + self).getScheme() in [...])` -> the allowed schemes.
fn url_scheme_in(rule: &str) -> Option<Vec<String>> {
    let rest = rule.strip_prefix("isURL(self) ? (url(self).getScheme() in [")?;
    let (list, tail) = rest.split_once("])")?;
    let expected_tail = format!(
        " : (isURL(\"http://\" + self) && url(\"http://\" + self).getScheme() in [{list}])"
    );
    if tail != expected_tail {
        return None;
    }
    Some(
        list.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .collect(),
    )
}

/// The scheme of an absolute URL (`oci://...` -> "oci"); `None` when the text has none.
fn url_scheme(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once(':')?;
    let mut bytes = scheme.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// Go's `time.ParseDuration` in seconds: "1h30m", "1.5s", "500ms", "0".
fn go_duration_seconds(text: &str) -> Option<f64> {
    let body = text.strip_prefix('+').unwrap_or(text);
    if body == "0" {
        return Some(0.0);
    }
    let (negative, mut rest) = match body.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, body),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_evaluate_like_the_api_server() {
        let one_target =
            "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1";
        assert_eq!(evaluate(one_target, &json!({ "selector": {} })), Some(true));
        assert_eq!(
            evaluate(one_target, &json!({ "selector": {}, "targetRefs": [] })),
            Some(false)
        );
        let url = normalize(
            "isURL(self) ? (url(self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"]) : (isURL(\"http://\"\n+ self) &&\nurl(\"http://\" + self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"])",
        );
        assert_eq!(evaluate(&url, &json!("oci://ghcr.io/x/y:1")), Some(true));
        assert_eq!(evaluate(&url, &json!("ghcr.io/x/y:1")), Some(true));
        assert_eq!(
            evaluate(&url, &json!("ftp://example.com/x.wasm")),
            Some(false)
        );
        let duration = "duration(self) >= duration('1ms')";
        assert_eq!(evaluate(duration, &json!("1h30m")), Some(true));
        assert_eq!(evaluate(duration, &json!("0.5ms")), Some(false));
        assert_eq!(evaluate(duration, &json!("ten seconds")), Some(false));
        assert_eq!(evaluate("self.unknown()", &json!(1)), None);
    }
}
