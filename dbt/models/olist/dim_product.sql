-- Categories in English where the translation table has them. Two real
-- categories have no translation and 610 real products no category: they
-- keep the Portuguese name, or "unknown".
select
    p.product_id,
    p.product_category_name                      as category,
    coalesce(t.product_category_name_english,
             p.product_category_name, 'unknown') as category_english,
    p.product_name_lenght                        as name_length,
    p.product_description_lenght                 as description_length,
    p.product_photos_qty                         as photos,
    p.product_weight_g                           as weight_g,
    p.product_length_cm * p.product_height_cm * p.product_width_cm as volume_cm3
from {{ source('olist', 'products') }} p
left join {{ source('olist', 'product_category_name_translation') }} t
       on t.product_category_name = p.product_category_name
