-- Till store schema, version 9: a void of a paid sale is sealed.
--
-- A paid sale's hash covers its money, not its status, which moves on
-- after it joined the chain. A void of a paid sale now writes `void_seal`,
-- the hash of the sale's hash and the time it was voided (see
-- `bills::chain`), so a sale turned `voided` in the file is told from a
-- real void. The voids made before this version are sealed by the upgrade
-- step (`chain::seal_past_voids`).
ALTER TABLE bills ADD COLUMN void_seal TEXT;
