-- Payments outstanding: the latest version of each payment that is not paid,
-- by currency and payment type, with the oldest due date.
WITH latest AS (
    SELECT DISTINCT ON (payment_id) *
    FROM fact_payment
    ORDER BY payment_id, last_updated_date DESC, last_updated_time DESC
)
SELECT c.currency_code,
       t.payment_type_name,
       count(*)               AS payments,
       sum(l.payment_amount)  AS amount_outstanding,
       min(l.payment_date)    AS oldest_payment_date
FROM latest l
JOIN dim_currency c     ON c.currency_id = l.currency_id
JOIN dim_payment_type t ON t.payment_type_id = l.payment_type_id
WHERE NOT l.paid
GROUP BY c.currency_code, t.payment_type_name
ORDER BY c.currency_code, t.payment_type_name;
