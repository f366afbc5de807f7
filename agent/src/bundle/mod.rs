//! Fetching and unpacking revision bundles.
