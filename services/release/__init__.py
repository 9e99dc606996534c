"""The cross-border release (docs/contract.md section 8, docs/release.md): policies, disclosure
control, the release worker and the export of a day."""
