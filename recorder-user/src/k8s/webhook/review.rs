//! The review itself: an AdmissionReview in, the AdmissionReview answering it out, bounded
//! in memory ([`MAX_VALUES`]) and in size ([`MAX_RESPONSE`]), whatever the request holds.

use kube::core::{
    GroupVersionKind, Status,
    admission::{META_API_VERSION_V1, META_KIND, Operation, PatchType},
};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::Value;
use thiserror::Error;

#[cfg(doc)]
use super::MAX_RESPONSE;
use super::{MAX_ERRORS, MAX_LINE, MAX_UID, MAX_WARNINGS};
use crate::profile::validate::{Problem, Severity, Validator};

/// Why a review could not be answered (an HTTP 400, not a denial).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("expected an admission.k8s.io/v1 AdmissionReview, found {0}")]
    NotAReview(String),
    #[error("the AdmissionReview has no request.uid")]
    NoUid,
    #[error("request.uid is {len} bytes long, more than {MAX_UID}")]
    LongUid { len: usize },
}

/// The parts of an AdmissionReview read, typed as kube's admission types type them; the rest
/// is skipped unread. kube's `AdmissionRequest<DynamicObject>` itself is not used: it holds
/// the object as a JSON tree (read through serde's buffering of flattened fields), where this
/// reads it (`O`) straight into the validator's tree, so a review's memory is one tree and its
/// problems; or skips it (`IgnoredAny`) when too large to check. Nor does it require what
/// only the API server's reviews carry (`userInfo`, `resource`): a bad review is a 400 that
/// says what is wrong with it ([`ReviewError`]), not a serde error.
#[derive(Deserialize)]
#[serde(bound = "O: Deserialize<'de>")]
pub(super) struct Incoming<O> {
    #[serde(rename = "apiVersion", default)]
    api_version: Value,
    #[serde(default)]
    kind: Value,
    #[serde(default = "none")]
    request: Option<Request<O>>,
}

#[derive(Deserialize)]
#[serde(bound = "O: Deserialize<'de>")]
pub(super) struct Request<O> {
    #[serde(default)]
    pub(super) uid: Value,
    #[serde(default)]
    pub(super) kind: Option<GroupVersionKind>,
    #[serde(default)]
    pub(super) operation: Option<Operation>,
    #[serde(default)]
    name: Value,
    #[serde(default)]
    pub(super) namespace: Value,
    #[serde(rename = "subResource", default)]
    pub(super) sub_resource: Value,
    #[serde(default = "none")]
    pub(super) object: Option<O>,
    #[serde(rename = "oldObject", default = "none")]
    old_object: Option<OldObject<O>>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
#[serde(bound = "O: Deserialize<'de>")]
struct OldObject<O> {
    #[serde(default = "none")]
    spec: Option<O>,
}

/// Values in a review checked (see [`json_values`]): each costs a tree node and may cost a
/// problem or two (the validator lists them all), ~600 bytes in all: ~75 MiB measured at
/// this many one-letter names. A real profile has a few thousand values (≈ 450 syscalls
/// exist); beyond this, the profile is denied as too large to check, without being read.
pub const MAX_VALUES: usize = 128 * 1024;

/// How many JSON values (object keys included) `body` holds at most: every one but the first
/// follows a `[`, `{`, `,` or `:` outside strings. Counted without allocating.
pub(super) fn json_values(body: &[u8]) -> usize {
    let (mut values, mut in_string, mut escaped) = (1, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' | b',' | b':' => values += 1,
                _ => {}
            }
        }
    }
    values
}

/// The AdmissionReview answering `body`: allowed unless the object has errors. At most
/// [`MAX_RESPONSE`] bytes long; the problems it leaves out are counted in it and returned
/// (the second value) for /metrics.
pub fn review(validator: &mut Validator, body: &[u8]) -> Result<(Value, u64), ReviewError> {
    let values = json_values(body);
    if values > MAX_VALUES {
        let incoming: Incoming<IgnoredAny> =
            serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
        let request = incoming.request_checked()?;
        let Some((uid, kind)) = ours(&request)? else {
            return Ok((allow(request.uid.as_str().unwrap_or_default()), 0));
        };
        let name = request.name.as_str().map(cut).unwrap_or_default();
        let message = format!(
            "{kind} {name:?} is too large to check: its review holds {values} JSON values \
             (syscall names, fields…), more than {MAX_VALUES}"
        );
        return Ok((respond(&uid, false, Some(message), Vec::new()), 0));
    }
    let incoming: Incoming<serde_yaml::Value> =
        serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    let mut request = incoming.request_checked()?;
    let Some((uid, kind)) = ours(&request)? else {
        return Ok((allow(request.uid.as_str().unwrap_or_default()), 0));
    };
    let object = request.object.take().unwrap_or(serde_yaml::Value::Null);
    // A change that leaves the spec alone (finalizers, labels, annotations) passes: a profile
    // admitted before this webhook existed must still be deletable.
    let old_spec = request.old_object.take().and_then(|o| o.spec);
    if request.operation == Some(Operation::Update) && old_spec.as_ref() == object.get("spec") {
        return Ok((allow(&uid), 0));
    }
    drop(old_spec);
    let name = request
        .name
        .as_str()
        .or_else(|| object.get("metadata")?.get("name")?.as_str())
        .map(cut)
        .unwrap_or_default();
    let (problems, not_listed) = validator.validate_counted(&object);
    drop(object);
    let (errors, more_errors) = listed(&problems, Severity::Error, MAX_ERRORS);
    let (mut warnings, more_warnings) = listed(&problems, Severity::Warning, MAX_WARNINGS);
    // The validator lists at most MAX_LISTED of each and counts the rest.
    let (more_errors, more_warnings) = (
        more_errors + not_listed[0] as u64,
        more_warnings + not_listed[1] as u64,
    );
    drop(problems);
    if more_warnings > 0 {
        warnings.push(format!("and {more_warnings} more warnings"));
    }
    let omitted = more_errors + more_warnings;
    if errors.is_empty() {
        Ok((respond(&uid, true, None, warnings), omitted))
    } else {
        let mut message = format!("{kind} {name:?} is invalid: {}", errors.join("; "));
        if more_errors > 0 {
            message.push_str(&format!("; and {more_errors} more problems"));
        }
        Ok((respond(&uid, false, Some(message), warnings), omitted))
    }
}

impl<O> Incoming<O> {
    /// The request of an admission.k8s.io/v1 AdmissionReview with a uid.
    pub(super) fn request_checked(self) -> Result<Request<O>, ReviewError> {
        let api_version = self.api_version.as_str().unwrap_or_default();
        if api_version != META_API_VERSION_V1 || self.kind != META_KIND {
            return Err(ReviewError::NotAReview(format!(
                "apiVersion {:?}, kind {}",
                cut(api_version),
                cut(&self.kind.to_string())
            )));
        }
        let request = self.request.ok_or(ReviewError::NoUid)?;
        let uid = request.uid.as_str().ok_or(ReviewError::NoUid)?;
        if uid.len() > MAX_UID {
            return Err(ReviewError::LongUid { len: uid.len() });
        }
        Ok(request)
    }
}

/// The uid and kind of a request to judge (a create or update of a profile); none for the
/// rest, which pass (the webhook configuration sends only these).
fn ours<O>(request: &Request<O>) -> Result<Option<(String, String)>, ReviewError> {
    let uid = request.uid.as_str().ok_or(ReviewError::NoUid)?;
    let kind = request
        .kind
        .as_ref()
        .map(|k| k.kind.as_str())
        .unwrap_or_default();
    Ok((matches!(
        request.operation,
        Some(Operation::Create | Operation::Update)
    ) && matches!(
        kind,
        "SeccompProfile" | "SelinuxProfile" | "RawSelinuxProfile"
    ))
    .then(|| (uid.to_owned(), kind.to_owned())))
}

fn allow(uid: &str) -> Value {
    respond(uid, true, None, Vec::new())
}

pub(super) fn respond(
    uid: &str,
    allowed: bool,
    message: Option<String>,
    warnings: Vec<String>,
) -> Value {
    let status = message.map(|message| (422, "Invalid", message));
    respond_with(uid, allowed, status, warnings, None)
}

/// An AdmissionReview answer as the API server reads it, with kube's status and patch type.
/// kube's `AdmissionResponse` is not what is written: it always writes a `status` (empty when
/// allowed) and its patch as an array of numbers, where this writes a status only to refuse
/// and the patch in base64, as Go's `[]byte` is written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    api_version: &'static str,
    kind: &'static str,
    response: Response,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<PatchType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

/// An answer with a status (code, reason, message) when refused, at most [`MAX_WARNINGS`]
/// warnings (then one saying how many more) and a JSONPatch when it changes the object.
pub(super) fn respond_with(
    uid: &str,
    allowed: bool,
    status: Option<(u16, &str, String)>,
    mut warnings: Vec<String>,
    patch: Option<&json_patch::Patch>,
) -> Value {
    if warnings.len() > MAX_WARNINGS + 1 {
        let more = warnings.len() - MAX_WARNINGS;
        warnings.truncate(MAX_WARNINGS);
        warnings.push(format!("and {more} more warnings"));
    }
    let answer = Answer {
        api_version: META_API_VERSION_V1,
        kind: META_KIND,
        response: Response {
            uid: uid.to_owned(),
            allowed,
            status: status.map(|(code, reason, message)| Status {
                code,
                reason: reason.to_owned(),
                message,
                ..Status::default()
            }),
            warnings: (!warnings.is_empty()).then_some(warnings),
            patch_type: patch.map(|_| PatchType::JsonPatch),
            patch: patch.map(super::binding::encode_patch),
        },
    };
    serde_json::to_value(answer).expect("answers serialize")
}

/// The first `max` problems of a severity as lines, and how many more there are.
fn listed(problems: &[Problem], severity: Severity, max: usize) -> (Vec<String>, u64) {
    let mut of = problems.iter().filter(|p| p.severity == severity);
    let lines = of.by_ref().take(max).map(|p| cut(&p.to_string())).collect();
    (lines, of.count() as u64)
}

/// `text` with control characters escaped (it reaches terminals through kubectl), cut to
/// [`MAX_LINE`] bytes with the number of bytes cut said.
pub(super) fn cut(text: &str) -> String {
    let mut clean = String::with_capacity(text.len().min(MAX_LINE + 32));
    let mut chars = text.char_indices();
    for (at, c) in chars.by_ref() {
        if c.is_control() {
            clean.extend(c.escape_default());
        } else {
            clean.push(c);
        }
        if clean.len() > MAX_LINE {
            let left = text.len() - at - c.len_utf8();
            // Back to the last whole character within the limit.
            let mut end = MAX_LINE;
            while !clean.is_char_boundary(end) {
                end -= 1;
            }
            let cut_here = clean.len() - end + left;
            clean.truncate(end);
            clean.push_str(&format!("… ({cut_here} more bytes)"));
            return clean;
        }
    }
    clean
}
