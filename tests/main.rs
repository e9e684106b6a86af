mod grad;
